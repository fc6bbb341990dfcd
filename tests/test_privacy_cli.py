"""`poisonguard privacy`: the report's keys, the checklist on planted problems, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner
from conftest import write_table_csv
from poisonguard.cli.main import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def checklist(report: dict) -> dict[str, dict]:
    return {item["item"]: item for item in report["privacy"]["checklist"]}


def test_privacy_report_keys_and_sections(make_image_folder, tmp_path):
    folder = make_image_folder({c: 30 for c in ("a", "b", "c", "d")})
    out = tmp_path / "report"
    result = run(
        "privacy",
        folder,
        "--epochs",
        "3",
        "--shadows",
        "4",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    privacy = report["privacy"]
    assert privacy["n_members"] == 60 and privacy["n_nonmembers"] == 60
    membership = privacy["membership"]
    assert 0.0 <= membership["auc"] <= 1.0 and -1.0 <= membership["advantage"] <= 1.0
    assert [row["requested_fpr"] for row in membership["tpr_at_fpr"]] == [0.01, 0.001]
    assert set(membership["attacks"]) == {"loss", "lira"}
    per_class = privacy["inversion"]["per_class"]
    assert [row["class"] for row in per_class] == ["a", "b", "c", "d"]
    assert all(0.0 <= row["confidence"] <= 1.0 for row in per_class)
    items = privacy["checklist"]
    assert items and all(set(item) >= {"item", "status", "evidence"} for item in items)
    assert {item["status"] for item in items} <= {"pass", "warn", "fail"}
    html = (out / "report.html").read_text()
    for section in ("checklist", "membership", "inversion"):
        assert f'id="{section}"' in html
    assert html.count("data:image/png;base64,") >= 1 + 2 * 4  # ROC + 4 reconstruction pairs
    assert "Membership inference" in result.output and "Report:" in result.output


def test_privacy_checklist_catches_planted_duplicates(make_image_folder, tmp_path):
    folder = make_image_folder({c: 30 for c in ("a", "b", "c", "d")})
    for name in ("a", "b"):
        for j in range(6):  # the same file under another name: exact duplicates
            shutil.copyfile(folder / name / f"img_{j:03d}.png", folder / name / f"dup_{j:03d}.png")
    out = tmp_path / "report"
    result = run(
        "privacy",
        folder,
        "--epochs",
        "2",
        "--shadows",
        "4",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    items = checklist(json.loads((out / "report.json").read_text()))
    inside = [item for name, item in items.items() if "duplicate" in name.lower()]
    overlap = [item for name, item in items.items() if "held" in name.lower()]
    # 24 copies split at random between members and non-members: some pairs land on each side
    assert any(item["status"] != "pass" for item in inside + overlap)


def test_privacy_flags_an_id_column_in_a_table(tmp_path):
    table = write_table_csv(tmp_path / "table.csv", per_class=40)
    lines = table.read_text().splitlines()
    rng = np.random.default_rng(0)
    numbers = rng.permutation(len(lines) - 1) + 5000
    rows = [f"{lines[0].split(',')[0]},customer_no,{','.join(lines[0].split(',')[1:])}"]
    for number, line in zip(numbers, lines[1:], strict=True):
        first, rest = line.split(",", 1)
        rows.append(f"{first},{int(number)},{rest}")
    with_id = tmp_path / "with_id.csv"
    with_id.write_text("\n".join(rows) + "\n")
    out = tmp_path / "report"
    result = run(
        "privacy",
        with_id,
        "--epochs",
        "2",
        "--shadows",
        "4",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    flagged = [item for item in report["privacy"]["checklist"] if "customer_no" in item["evidence"]]
    assert flagged and flagged[0]["status"] == "fail"
    # the plain table has no such column
    out = tmp_path / "plain"
    assert (
        run(
            "privacy",
            table,
            "--epochs",
            "2",
            "--shadows",
            "4",
            "--cache-dir",
            tmp_path / "cache",
            "--out",
            out,
        ).exit_code
        == 0
    )
    plain = json.loads((out / "report.json").read_text())
    assert not [item for item in plain["privacy"]["checklist"] if "customer_no" in item["evidence"]]


def test_privacy_rejects_a_holdout_with_other_classes(make_image_folder, tmp_path):
    folder = make_image_folder({c: 20 for c in ("a", "b", "c", "d")})
    other = make_image_folder({c: 10 for c in ("x", "y")}, name="other")
    result = run("privacy", folder, "--holdout", other, "--out", tmp_path / "report")
    assert result.exit_code == 1 and "classes" in result.output
    assert not (tmp_path / "report").exists()


def test_privacy_with_shadow_models_adds_both_lira_variants(make_image_folder, tmp_path):
    folder = make_image_folder({c: 20 for c in ("a", "b", "c", "d")})
    out = tmp_path / "report"
    result = run(
        "privacy",
        folder,
        "--epochs",
        "2",
        "--shadows",
        "4",
        "--shadow-models",
        "2",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    attacks = json.loads((out / "report.json").read_text())["privacy"]["membership"]["attacks"]
    assert set(attacks) == {"loss", "lira", "lira-models", "lira-models-online"}
    assert all(0.0 <= values["auc"] <= 1.0 for values in attacks.values())


def test_privacy_with_a_torchscript_model_skips_inversion(make_image_folder, tmp_path):
    import torch
    from torch import nn

    class Pool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x.mean(dim=3).flatten(1), x.amax(dim=2).flatten(1)], dim=1)

    model_file = tmp_path / "extractor.pt"
    torch.jit.script(Pool()).save(str(model_file))
    folder = make_image_folder({c: 20 for c in ("a", "b", "c", "d")})
    out = tmp_path / "report"
    result = run(
        "privacy",
        folder,
        "--model",
        model_file,
        "--epochs",
        "2",
        "--shadows",
        "4",
        "--shadow-models",
        "2",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    privacy = json.loads((out / "report.json").read_text())["privacy"]
    assert privacy["inversion"]["per_class"] == []
    assert "PoisonGuard trained itself" in privacy["inversion"]["note"]
    assert "lira-models-online" in privacy["membership"]["attacks"]
    assert "model inversion" not in {item["item"] for item in privacy["checklist"]}
