"""``poisonguard privacy``: a thin wrapper over :func:`poisonguard.privacy.probe.privacy_probe`."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click
from poisonguard.cli.options import (
    cache_options,
    dataset_options,
    library_errors,
    loader_options,
    progress_option,
    resolve_progress,
)

from poisonguard.loaders import load_dataset
from poisonguard.privacy.probe import PrivacySettings, privacy_probe
from poisonguard.report.privacy_report import write_privacy_report


@click.command()
@dataset_options
@click.option(
    "--model",
    "model_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TorchScript feature extractor to probe instead of training a model (no inversion).",
)
@click.option(
    "--holdout",
    "holdout_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Held-out (non-member) data in the same format and classes; default: a split of DATASET.",
)
@click.option(
    "--holdout-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="Share of DATASET held out as non-members when there is no --holdout.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Training epochs of the model (default: chosen from the data size).",
)
@click.option(
    "--shadows",
    type=click.IntRange(min=2),
    default=16,
    show_default=True,
    help="Shadow heads of the LiRA attack.",
)
@click.option(
    "--shadow-models",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also run LiRA with this many shadow models trained like the target (one training "
    "run each; much stronger at low false-positive rates). 0: shadow heads only.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Report folder (default reports/<dataset>-privacy-<UTC timestamp>).",
)
@cache_options
@progress_option
@library_errors
def privacy(
    dataset: Path,
    format_: str | None,
    x_key: str | None,
    y_key: str | None,
    label_column: str | None,
    id_column: str | None,
    text_column: str | None,
    skip_bad: bool,
    model_file: Path | None,
    holdout_path: Path | None,
    holdout_fraction: float,
    seed: int,
    epochs: int | None,
    shadows: int,
    shadow_models: int,
    out_dir: Path | None,
    cache_dir: Path | None,
    no_cache: bool,
    progress: bool | None,
) -> None:
    """Probe how much a model trained on DATASET leaks its records.

    Membership inference (loss threshold and offline LiRA), model inversion (MI-Face; not for
    texts) and a privacy review checklist; for texts the checklist adds exact and near-duplicate
    texts and personal data in them (e-mail addresses, phone numbers, card numbers, IBANs,
    shown masked). report.json and report.html in the report folder.
    """
    options = loader_options(format_, x_key, y_key, label_column, id_column, text_column)
    source = load_dataset(dataset, skip_bad=skip_bad, **options)
    holdout = (
        None if holdout_path is None else load_dataset(holdout_path, skip_bad=skip_bad, **options)
    )
    settings = PrivacySettings(
        seed=seed,
        holdout_fraction=holdout_fraction,
        epochs=epochs,
        model_file=model_file,
        n_shadow=shadows,
        shadow_models=shadow_models,
    )
    result = privacy_probe(
        source,
        settings,
        holdout=holdout,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        progress=resolve_progress(progress),
    )
    if out_dir is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out_dir = Path("reports") / f"{source.name}-privacy-{stamp}"
    files = write_privacy_report(result, out_dir)
    report = result.privacy
    membership = report["membership"]
    click.echo(
        f"Probed {source.path} ({report['n_members']} members, {report['n_nonmembers']} "
        f"non-members; train accuracy {report['train_accuracy']:.1%}, held out "
        f"{report['heldout_accuracy']:.1%})."
    )
    click.echo(
        f"Membership inference ({membership['attack']}): AUC {membership['auc']:.3f}, "
        f"advantage {membership['advantage']:.3f}."
    )
    for item in report["checklist"]:
        click.echo(f"  [{item['status']:>4}] {item['item']}: {item['evidence']}")
    click.echo(f"Report: {files.html} (with report.json)")
