"""Text datasets (issue 16, item 1): CSV/TSV, JSON Lines, Parquet and folders of .txt files read
to the same Dataset of ``kind == "text"``; bad input ends in a DatasetError naming the file and
the problem; ``scan`` reads every text format, the other commands refuse text in one line until
they take it (the scan of text itself: test_text_scan.py)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_clean_failure, run_cli, write_table_csv
from PIL import Image

from poisonguard.dataset import Dataset, RowNumbers
from poisonguard.errors import DatasetError
from poisonguard.loaders import detect_format, is_text_dataset, load_dataset

# sorted by class, then id: the order a text folder reads its files in
CORPUS = [
    ("doc-1", "neg", 'Stale, and the bag arrived "opened"; avoid.'),
    ("doc-2", "neg", "  Leading spaces stay; so does a trailing one "),
    ("doc-3", "neg", "Café au lait flavour tasted burnt ☹"),
    ("doc-4", "pos", "Great snack: crisp, sweet — 10/10 🍎"),
    ("doc-5", "pos", "'Quoted' start and a, comma"),
    ("doc-6", "pos", "<br />HTML as stored by the shop"),
]
IDS = [i for i, _, _ in CORPUS]
LABELS = [label for _, label, _ in CORPUS]
TEXTS = [text for _, _, text in CORPUS]


def rows(columns=("id", "text", "label")):
    values = {"id": IDS, "text": TEXTS, "label": LABELS}
    return [[values[c][i] for c in columns] for i in range(len(CORPUS))]


def write_csv(path: Path, table: list[list], header=("id", "text", "label"), **kw) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n", **kw)
        writer.writerows([list(header), *table])
    return path


def write_tsv(path: Path, table: list[list], header=("id", "text", "label")) -> Path:
    lines = ["\t".join(header)] + ["\t".join(map(str, row)) for row in table]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_text(text, encoding="utf-8")
    return path


def write_parquet(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def write_folder(root: Path) -> Path:
    for sample_id, label, text in CORPUS:
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{sample_id}.txt").write_bytes(text.encode("utf-8"))
    return root


def write_corpus(fmt: str, tmp_path: Path, *, with_ids: bool = True) -> Path:
    columns = ("id", "text", "label") if with_ids else ("text", "label")
    table = rows(columns)
    if fmt == "csv":
        return write_csv(tmp_path / "corpus.csv", table, columns)
    if fmt == "tsv":
        return write_tsv(tmp_path / "corpus.tsv", table, columns)
    if fmt == "jsonl":
        return write_jsonl(
            tmp_path / "corpus.jsonl", [dict(zip(columns, r, strict=True)) for r in table]
        )
    if fmt == "parquet":
        return write_parquet(
            tmp_path / "corpus.parquet", dict(zip(columns, zip(*table, strict=True), strict=True))
        )
    return write_folder(tmp_path / "corpus")


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


FORMATS = ["csv", "tsv", "jsonl", "parquet", "text-folder"]


# --- every format, the same Dataset --------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_the_same_corpus(fmt, tmp_path):
    path = write_corpus(fmt, tmp_path)
    assert detect_format(path) == fmt
    assert is_text_dataset(path)
    data = load_dataset(path)
    assert data.kind == "text" and data.format == fmt
    assert data.x.dtype == object and data.x.shape == (len(CORPUS),)
    assert data.x.tolist() == TEXTS  # exactly as written: no stripping, no normalisation
    assert data.class_names == ["neg", "pos"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    expected_ids = (
        [f"{lab}/{i}.txt" for i, lab in zip(IDS, LABELS, strict=True)]
        if fmt == "text-folder"
        else IDS
    )
    assert list(data.ids) == expected_ids
    assert data.feature_names is None


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_without_an_id_column_the_ids_are_row_numbers(fmt, tmp_path):
    data = load_dataset(write_corpus(fmt, tmp_path, with_ids=False))
    assert data.ids == RowNumbers(len(CORPUS))
    assert data.x.tolist() == TEXTS


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_named_columns(fmt, tmp_path):
    header = ("key", "review", "score")
    table = rows()
    if fmt == "csv":
        path = write_csv(tmp_path / "c.csv", table, header)
    elif fmt == "tsv":
        path = write_tsv(tmp_path / "c.tsv", table, header)
    elif fmt == "jsonl":
        path = write_jsonl(tmp_path / "c.jsonl", [dict(zip(header, r, strict=True)) for r in table])
    else:
        path = write_parquet(
            tmp_path / "c.parquet", dict(zip(header, zip(*table, strict=True), strict=True))
        )
    data = load_dataset(path, text_column="review", label_column="score", id_column="key")
    assert (data.x.tolist(), list(data.ids), data.class_names) == (TEXTS, IDS, ["neg", "pos"])


def test_default_columns_match_case_insensitively(tmp_path):
    path = write_csv(tmp_path / "c.csv", rows(("text", "label")), ("Text", "Label"))
    assert load_dataset(path).x.tolist() == TEXTS


def test_csv_texts_keep_quotes_commas_line_breaks_and_long_cells(tmp_path):
    long_text = "word " * 40_000  # 200,000 characters: over the csv module's default field limit
    texts = ['line one\r\nline "two", with a comma', long_text, "x"]
    path = write_csv(
        tmp_path / "c.csv",
        [[t, lab] for t, lab in zip(texts, "aba", strict=True)],
        ("text", "label"),
    )
    data = load_dataset(path)
    assert data.x.tolist() == texts
    assert data.labels.tolist() == [0, 1, 0]


def test_numeric_and_integer_labels(tmp_path):
    path = write_parquet(tmp_path / "n.parquet", {"text": TEXTS, "label": [0, 0, 0, 1, 1, 10]})
    assert load_dataset(path).class_names == ["0", "1", "10"]
    path = write_jsonl(
        tmp_path / "n.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    )
    assert load_dataset(path).class_names == ["0", "1"]


def test_parquet_dictionary_encoded_columns(tmp_path):
    labels = pa.array(LABELS).dictionary_encode()
    path = write_parquet(
        tmp_path / "d.parquet", {"text": pa.array(TEXTS).dictionary_encode(), "label": labels}
    )
    data = load_dataset(path)
    assert data.x.tolist() == TEXTS and data.class_names == ["neg", "pos"]


def test_csv_without_a_text_column_is_still_a_numeric_table(tmp_path):
    path = write_table_csv(tmp_path / "table.csv")
    assert not is_text_dataset(path)
    data = load_dataset(path)
    assert data.kind == "table" and data.x.dtype == np.float32 and data.x.shape == (90, 4)


def test_named_text_column_missing_from_a_csv_is_an_error(tmp_path):
    path = write_table_csv(tmp_path / "table.csv")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path, text_column="review")
    assert "table.csv" in message(excinfo)
    assert "no text column 'review'" in message(excinfo) and "'f1'" in message(excinfo)


def test_folder_kind_is_picked_by_its_files(tmp_path):
    assert detect_format(write_folder(tmp_path / "texts")) == "text-folder"
    images = tmp_path / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(images / label / "x.png")
    assert detect_format(images) == "image-folder"
    (images / "a" / "notes.txt").write_text("a note", encoding="utf-8")  # images win
    assert detect_format(images) == "image-folder"
    (tmp_path / "empty").mkdir()
    assert detect_format(tmp_path / "empty") == "image-folder"


def test_text_folder_ignores_other_files_with_a_note(tmp_path):
    root = write_folder(tmp_path / "t")
    (root / "README.md").write_text("about", encoding="utf-8")
    (root / "neg" / "meta.json").write_text("{}", encoding="utf-8")
    (root / ".hidden").mkdir()
    data = load_dataset(root)
    assert data.x.tolist() == TEXTS
    assert any("neg/meta.json" in note for note in data.notes)


def test_text_folder_links_leaving_it_are_not_read(tmp_path):
    root = write_folder(tmp_path / "t")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the dataset", encoding="utf-8")
    os.symlink(secret, root / "pos" / "zz-leak.txt")
    os.symlink(root / "neg" / "doc-1.txt", root / "pos" / "zz-inside.txt")  # inside: read
    data = load_dataset(root)
    assert "outside the dataset" not in data.x.tolist()
    assert data.x.tolist()[-1] == TEXTS[0] and list(data.ids)[-1] == "pos/zz-inside.txt"
    assert any("pos/zz-leak.txt" in note and "outside" in note for note in data.notes)
    only_link = tmp_path / "u"
    (only_link / "a").mkdir(parents=True)
    (only_link / "b").mkdir()
    (only_link / "a" / "x.txt").write_text("kept", encoding="utf-8")
    os.symlink(secret, only_link / "b" / "y.txt")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(only_link, format="text-folder")
    assert "has no .txt files" in message(excinfo) and "b/y.txt" in message(excinfo)


# --- bad input: the file and the problem ---------------------------------------------------------


def raw(name: str, data: bytes | str):
    """A maker of the file ``name`` holding ``data`` (text as UTF-8)."""

    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return path

    return make


def _records(**change) -> list[dict]:
    records = [dict(zip(("id", "text", "label"), r, strict=True)) for r in rows()]
    for index, record in change.items():
        records[int(index[1:])] = record
    return records


BAD = {
    "csv empty text": (
        lambda p: write_csv(p / "b.csv", [["1", "ok", "a"], ["2", "  ", "b"]]),
        "line 3: empty text",
    ),
    "csv missing label column": (
        lambda p: write_csv(p / "b.csv", [["x", "a"]], ("text", "score")),
        "no label column 'label'; the columns are 'text', 'score'",
    ),
    "csv invalid utf-8": (
        raw("b.csv", b"text,label\nok,a\nbad \xff here,b\n"),
        "line 3 is not UTF-8",
    ),
    "csv one class": (
        lambda p: write_csv(p / "b.csv", [["1", "x", "a"], ["2", "y", "a"]]),
        "found 1 class (a)",
    ),
    "csv short row": (
        lambda p: write_csv(p / "b.csv", [["1", "x", "a"], ["2", "y"]]),
        "line 3 has 2 fields",
    ),
    "csv repeated id": (
        lambda p: write_csv(p / "b.csv", [["1", "x", "a"], ["1", "y", "b"]]),
        "line 3: id '1' already used on line 2",
    ),
    "tsv invalid utf-8": (
        raw("b.tsv", b"text\tlabel\nok\ta\nok\tb\n\xc3(\ta\n"),
        "line 4 is not UTF-8",
    ),
    "tsv missing text column": (
        lambda p: write_tsv(p / "b.tsv", [["x", "a"]], ("body", "label")),
        "no text column 'text'; the columns are 'body', 'label'",
    ),
    "jsonl not json": (
        raw("b.jsonl", '{"text": "a", "label": 1}\n{"text": \n'),
        "line 2 is not valid JSON",
    ),
    "jsonl not an object": (
        raw("b.jsonl", '{"text": "a", "label": 1}\n["a", 1]\n'),
        "line 2 holds a JSON list, not an object",
    ),
    "jsonl missing field": (
        lambda p: write_jsonl(p / "b.jsonl", _records(r3={"id": "x", "body": "t", "label": "a"})),
        "line 4 has no field 'text'; its fields are 'id', 'body', 'label'",
    ),
    "jsonl text not a string": (
        lambda p: write_jsonl(p / "b.jsonl", _records(r1={"id": "x", "text": 5, "label": "a"})),
        "line 2: the text ('text') is a number, not a string",
    ),
    "jsonl null label": (
        lambda p: write_jsonl(p / "b.jsonl", _records(r2={"id": "x", "text": "t", "label": None})),
        "line 3: the label ('label') is missing (null)",
    ),
    "jsonl invalid utf-8": (
        raw("b.jsonl", b'{"text": "a", "label": 1}\n{"text": "\xff", "label": 2}\n'),
        "line 2 is not UTF-8",
    ),
    "jsonl nested too deeply": (
        raw("b.jsonl", "[" * 100_000 + "\n"),
        "line 1: JSON nested too deeply",
    ),
    "jsonl lone surrogate": (
        raw("b.jsonl", '{"text": "a\\ud800", "label": 1}\n'),
        "line 1: the text holds a lone surrogate",
    ),
    "parquet missing column": (
        lambda p: write_parquet(p / "b.parquet", {"body": TEXTS, "label": LABELS}),
        "no text column 'text'; the columns are 'body', 'label'",
    ),
    "parquet null text": (
        lambda p: write_parquet(
            p / "b.parquet", {"text": ["a", None, "c"], "label": ["x", "y", "x"]}
        ),
        "row 1: the text ('text') is missing (null)",
    ),
    "parquet invalid utf-8": (
        lambda p: write_parquet(
            p / "b.parquet",
            {"text": pa.array([b"ok", b"ok", b"\xffno"], pa.binary()), "label": [1, 2, 1]},
        ),
        "row 2: 'text' is not UTF-8",
    ),
    "parquet numbers for text": (
        lambda p: write_parquet(p / "b.parquet", {"text": [1, 2], "label": [1, 2]}),
        "column 'text' holds int64, not text",
    ),
    "parquet not parquet": (
        raw("b.parquet", b"PAR1 not really"),
        "could not be read as Parquet",
    ),
    "parquet one class": (
        lambda p: write_parquet(p / "b.parquet", {"text": ["a", "b"], "label": ["x", "x"]}),
        "found 1 class (x)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_the_file_and_the_problem(case, tmp_path):
    make, problem = BAD[case]
    path = make(tmp_path)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path)
    assert path.name in message(excinfo)
    assert problem in message(excinfo)


def test_bad_text_folders(tmp_path):
    root = write_folder(tmp_path / "t")
    (root / "pos" / "empty.txt").write_bytes(b" \n")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root)
    assert "pos/empty.txt" in message(excinfo) and "is empty" in message(excinfo)
    (root / "pos" / "empty.txt").write_bytes(b"fine\nstill fine\nbad \xfe\n")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root)
    assert "pos/empty.txt" in message(excinfo) and "line 3 is not UTF-8" in message(excinfo)
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    (one / "only" / "a.txt").write_text("a text", encoding="utf-8")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(one)
    assert "one" in message(excinfo) and "found 1 class (only)" in message(excinfo)


@pytest.mark.parametrize("fmt", FORMATS)
def test_over_the_size_limit_is_refused_before_reading(fmt, tmp_path):
    path = write_corpus(fmt, tmp_path)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path, max_bytes=100)
    assert path.name in message(excinfo) and "more than the limit of 100 bytes" in message(excinfo)


def test_parquet_dictionary_bomb_is_refused_before_expanding(tmp_path):
    text = pa.array(["x" * 1000] * 10_000).dictionary_encode()  # 10 MB of text in a small file
    path = write_parquet(tmp_path / "bomb.parquet", {"text": text, "label": [0, 1] * 5000})
    assert path.stat().st_size < 100_000
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path, max_bytes=2_000_000)
    assert "10,000 rows of text" in message(excinfo) and "more than the limit" in message(excinfo)


def test_dataset_checks_the_text_layout(tmp_path):
    def make(x):
        return Dataset(
            x=x,
            labels=np.array([0, 1]),
            class_names=["a", "b"],
            ids=["0", "1"],
            kind="text",
            path=tmp_path,
            format="jsonl",
        )

    assert make(np.array(["a", "b"], dtype=object)).n_samples == 2
    for x in (
        np.array(["a", "b"]),
        np.array([["a"], ["b"]], dtype=object),
        np.array(["a", 3], dtype=object),
        np.array(["a", " "], dtype=object),
    ):
        with pytest.raises(DatasetError, match="internal: text x"):
            make(x)


# --- the commands on text (each command's own tests: test_text_scan, _poison, _privacy...) ---


@pytest.mark.parametrize("fmt", FORMATS)
def test_scan_reads_every_text_format(fmt, tmp_path):
    path = write_corpus(fmt, tmp_path)
    result = run_cli("scan", path, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert "6 samples, 2 classes" in result.output  # classes of 3: too small to be scored
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["dataset"]["kind"] == "text"
    assert report["dataset"]["format"] == fmt


def test_scan_with_a_text_column_the_csv_lacks(tmp_path):
    path = write_table_csv(tmp_path / "table.csv")
    result = run_cli("scan", path, "--text-column", "review", "--out", tmp_path / "out")
    assert_clean_failure(result, "table.csv", "no text column 'review'")


def test_text_column_option_is_offered_where_label_column_is(tmp_path):
    for command in ("scan", "poison", "sanitize", "evaluate", "privacy"):
        result = run_cli(command, "--help")
        assert "--label-column" in result.output and "--text-column" in result.output, command


def test_a_byte_order_mark_is_dropped_and_errors_count_bytes_after_it(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nfine,a\nalso fine,b\n")
    assert load_dataset(path).x.tolist() == ["fine", "also fine"]
    path.write_bytes(b"\xef\xbb\xbftext,label\nfine,a\nab\xffc,b\n")
    with pytest.raises(DatasetError, match=r"line 3 is not UTF-8 text .*0xff at byte 3 of"):
        load_dataset(path)
