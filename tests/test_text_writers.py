"""Writing a changed copy of a text dataset in its own format (issue 16, item 4): CSV, TSV, JSON
Lines, Parquet and folders of .txt files. Unchanged records stay byte for byte, a changed label
keeps the source's representation, a changed text is written so that the loader reads it back,
and ``poisonguard sanitize`` writes a cleaned copy of a scanned text CSV."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from test_text_loaders import FORMATS, write_corpus
from test_text_scan import reviews, write_reviews

from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError, OutputError
from poisonguard.loaders import load_dataset
from poisonguard.writers import write_like

BOM = codecs.BOM_UTF8


def texts(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def by_id(data: Dataset) -> dict[str, tuple[str, str]]:
    """Each sample's text and class name, by id."""
    return {
        sample_id: (text, data.class_names[code])
        for sample_id, text, code in zip(
            data.ids, data.x.tolist(), data.labels.tolist(), strict=True
        )
    }


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def digest(path: Path) -> str:
    files = tree(path) if path.is_dir() else {"": path.read_bytes()}
    return hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()


def checked_write(source: Dataset, destination: Path, **kwargs) -> list[str]:
    """``write_like`` that also checks the source was left as it was."""
    before = digest(Path(source.path))
    ids = write_like(source, destination, **kwargs)
    assert digest(Path(source.path)) == before
    return ids


# --- sources with every kind of record ----------------------------------------------------------

# A CSV with a byte-order mark, a blank line before the header, CRLF and LF line endings, a fully
# quoted record, a text over two lines, spaces around a label, a blank line between records, a
# line break inside a quoted text and no line ending at the end.
CSV_HEAD = "\r\nid,text,label\r\n"
CSV_RECORDS = [
    "a1,plain text, neg\r\n",
    '"a2","all quoted, with comma","pos"\r\n',
    'a3,"multi\nline ""quoted"" text",neg\r\n',
    "a4,  spaced text ,  pos \r\n",
    "a5,Café ☕ 🍎 unicode,neg\n",
    'a6,"text with \r\n a CRLF inside",pos',
]
CSV_TEXTS = [
    "plain text",
    "all quoted, with comma",
    'multi\nline "quoted" text',
    "  spaced text ",
    "Café ☕ 🍎 unicode",
    "text with \r\n a CRLF inside",
]
CSV_LABELS = ["neg", "pos", "neg", "pos", "neg", "pos"]


def write_tricky_csv(folder: Path) -> Path:
    body = CSV_HEAD + "".join(CSV_RECORDS[:4]) + "\r\n" + "".join(CSV_RECORDS[4:])
    path = folder / "tricky.csv"
    path.write_bytes(BOM + body.encode("utf-8"))
    return path


TSV_HEAD = "text\tlabel\n"
TSV_RECORDS = [
    'plain "quotes" stay\tneg\n',
    " leading space\t pos\r\n",
    "naïve café\tneg\n",
    "last one 🍎\tpos\n",
]


def write_tricky_tsv(folder: Path) -> Path:
    path = folder / "tricky.tsv"
    path.write_bytes((TSV_HEAD + "".join(TSV_RECORDS)).encode("utf-8"))
    return path


JSONL_RECORDS = [
    '{"id": "j1", "text": "h\\u00e9llo escaped", "label": 0, "extra": {"k": [1, 2]}}\n',
    '{ "text":"second" ,"label":1,"id":"j2"}\r\n',
    '{"id":"j3","text":"third","label":0,"meta":null}\n',
    '{"id":"j4","text":"fourth ✓","label":1}',
]


def write_tricky_jsonl(folder: Path) -> Path:
    path = folder / "tricky.jsonl"
    body = "".join(JSONL_RECORDS[:2]) + "\n" + "".join(JSONL_RECORDS[2:])
    path.write_bytes(BOM + body.encode("utf-8"))
    return path


# --- identity and subsets: records byte for byte --------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "text-folder"])
def test_identity_copy_is_byte_identical(fmt, tmp_path):
    path = write_corpus(fmt, tmp_path)
    source = load_dataset(path)
    out = tmp_path / ("copy" + path.suffix)
    ids = checked_write(source, out, rows=np.arange(source.n_samples), labels=source.labels)
    assert ids == list(source.ids)
    if fmt == "text-folder":
        assert tree(out) == tree(path)
    else:
        assert out.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_copy_loads_back_with_the_same_texts_labels_and_ids(fmt, tmp_path):
    path = write_corpus(fmt, tmp_path, with_ids=fmt == "text-folder")
    source = load_dataset(path)
    rows = np.array([5, 0, 3, 2])
    out = tmp_path / ("copy" + path.suffix)
    ids = checked_write(source, out, rows=rows, labels=source.labels[rows])
    back = load_dataset(out)
    assert back.kind == "text" and back.format == fmt
    expected = {
        new: by_id(source)[source.ids[r]] for new, r in zip(ids, rows.tolist(), strict=True)
    }
    assert by_id(back) == expected
    if fmt != "text-folder":  # without an id column, the ids are the copy's row numbers
        assert ids == ["0", "1", "2", "3"] and list(back.ids) == ids


def test_csv_subset_keeps_head_bom_and_every_record_byte_for_byte(tmp_path):
    path = write_tricky_csv(tmp_path)
    source = load_dataset(path)
    assert source.x.tolist() == CSV_TEXTS and list(source.ids) == [
        "a1",
        "a2",
        "a3",
        "a4",
        "a5",
        "a6",
    ]
    rows = np.array([5, 0, 3, 2])
    out = tmp_path / "copy.csv"
    ids = checked_write(source, out, rows=rows, labels=source.labels[rows])
    assert ids == ["a6", "a1", "a4", "a3"]
    # the last source record had no line ending: it gets the header's between records
    expected = CSV_HEAD + CSV_RECORDS[5] + "\r\n" + CSV_RECORDS[0] + CSV_RECORDS[3] + CSV_RECORDS[2]
    assert out.read_bytes() == BOM + expected.encode("utf-8")


def test_csv_changed_records_are_requoted_in_the_source_style(tmp_path):
    path = write_tricky_csv(tmp_path)
    source = load_dataset(path)
    rows = np.arange(6)
    labels = source.labels.copy()
    labels[1] = source.class_names.index("neg")  # the fully quoted record, relabelled
    labels[5] = source.class_names.index("neg")
    new_text = 'new "quoted", text\nwith a line break, é 🍎'
    x = texts([""] * 6)
    x[4] = new_text
    x[2] = "now on one line"
    changed = np.array([False, False, True, False, True, False])
    out = tmp_path / "copy.csv"
    checked_write(source, out, rows=rows, labels=labels, x=x, x_changed=changed)
    records = [
        CSV_RECORDS[0],
        '"a2","all quoted, with comma"," neg"\r\n',  # the label cell of the first "neg" row
        "a3,now on one line,neg\r\n",
        CSV_RECORDS[3],
        'a5,"new ""quoted"", text\nwith a line break, é 🍎",neg\n',
        'a6,"text with \r\n a CRLF inside", neg',
    ]
    assert out.read_bytes() == BOM + (CSV_HEAD + "".join(records)).encode("utf-8")
    back = load_dataset(out)
    assert back.x.tolist() == [
        *CSV_TEXTS[:2],
        "now on one line",
        CSV_TEXTS[3],
        new_text,
        CSV_TEXTS[5],
    ]
    assert [back.class_names[c] for c in back.labels] == ["neg", "neg", "neg", "pos", "neg", "neg"]


@pytest.mark.parametrize(
    "text",
    ['He said "hi", then left', "commas, everywhere,,", "line\nbreaks\r\nand\rreturns", "  ",
     "tab\tinside", "ünïcödé — 漢字 🍎", '"starts with a quote', "ends with a quote\""],
)  # fmt: skip
def test_any_text_round_trips_through_csv(text, tmp_path):
    path = write_corpus("csv", tmp_path)
    source = load_dataset(path)
    value = text if text.strip() else "x" + text  # a blank text is not a sample
    x = texts([value] * source.n_samples)
    out = tmp_path / "copy.csv"
    checked_write(source, out, rows=np.arange(source.n_samples), labels=source.labels, x=x)
    assert load_dataset(out).x.tolist() == [value] * source.n_samples


# --- TSV ---------------------------------------------------------------------------------------


def test_tsv_changes_keep_the_other_records_and_their_endings(tmp_path):
    path = write_tricky_tsv(tmp_path)
    source = load_dataset(path)
    assert source.class_names == ["neg", "pos"]
    rows = np.array([3, 1, 2])
    labels = source.labels[rows].copy()
    labels[0] = 0  # "last one" becomes neg: written as the first neg row's cell, "neg"
    labels[1] = 0  # " leading space" too
    x = texts(["", 'with "quotes" and ünïcode', ""])
    out = tmp_path / "copy.tsv"
    ids = checked_write(
        source, out, rows=rows, labels=labels, x=x, x_changed=np.array([False, True, False])
    )
    assert ids == ["0", "1", "2"]
    expected = (
        TSV_HEAD + "last one 🍎\tneg\n" + 'with "quotes" and ünïcode\tneg\r\n' + TSV_RECORDS[2]
    )
    assert out.read_bytes() == expected.encode("utf-8")


@pytest.mark.parametrize("bad", ["a\ttab", "a line\nbreak", "a return\r"])
def test_tsv_refuses_a_text_it_cannot_hold(bad, tmp_path):
    path = write_tricky_tsv(tmp_path)
    source = load_dataset(path)
    out = tmp_path / "copy.tsv"
    x = texts(["fine"] * source.n_samples)
    x[2] = bad
    with pytest.raises(OutputError, match=r"tricky\.tsv: the new text of sample '2' holds a"):
        write_like(source, out, rows=np.arange(4), labels=source.labels, x=x)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tricky.tsv"]


# --- JSON Lines --------------------------------------------------------------------------------


def test_jsonl_keeps_lines_byte_for_byte_and_changes_only_the_fields(tmp_path):
    path = write_tricky_jsonl(tmp_path)
    source = load_dataset(path)
    assert source.class_names == ["0", "1"] and list(source.ids) == ["j1", "j2", "j3", "j4"]
    rows = np.array([3, 0, 2, 1])
    labels = source.labels[rows].copy()
    labels[2] = 1  # j3: label 0 -> 1, a number as in the source
    x = texts(["", "", "", 'new "text" ✓'])
    changed = np.array([False, False, False, True])  # j2: new text, other fields and ending kept
    out = tmp_path / "copy.jsonl"
    ids = checked_write(source, out, rows=rows, labels=labels, x=x, x_changed=changed)
    assert ids == ["j4", "j1", "j3", "j2"]
    lines = [
        JSONL_RECORDS[3] + "\n",  # no ending in the source: the first record's
        JSONL_RECORDS[0],
        '{"id": "j3", "text": "third", "label": 1, "meta": null}\n',
        '{"text": "new \\"text\\" ✓", "label": 1, "id": "j2"}\r\n',
    ]
    assert out.read_bytes() == BOM + "".join(lines).encode("utf-8")
    back = load_dataset(out)
    assert by_id(back) == {
        "j4": ("fourth ✓", "1"),
        "j1": ("héllo escaped", "0"),
        "j3": ("third", "1"),
        "j2": ('new "text" ✓', "1"),
    }


def test_jsonl_string_labels_stay_strings(tmp_path):
    path = write_corpus("jsonl", tmp_path)
    source = load_dataset(path)
    labels = 1 - source.labels
    out = tmp_path / "copy.jsonl"
    checked_write(source, out, rows=np.arange(6), labels=labels)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in records] == ["pos"] * 3 + ["neg"] * 3
    assert [r["id"] for r in records] == list(source.ids)


# --- Parquet -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text_type",
    [pa.string(), pa.large_string(), pa.binary(), pa.dictionary(pa.int32(), pa.string())],
    ids=["string", "large_string", "binary", "dictionary"],
)
def test_parquet_keeps_schema_columns_and_types(text_type, tmp_path):
    values = ["first text", "second, with comma", "third ✓", "fourth\nline", "fifth", "sixth"]
    text = (
        pa.array(values).cast(text_type)
        if text_type != pa.binary()
        else pa.array([v.encode() for v in values], type=pa.binary())
    )
    table = pa.table(
        {
            "score": pa.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5], type=pa.float32()),
            "text": text,
            "label": pa.array([3, 7, 3, 7, 3, 7], type=pa.int16()),
            "tags": pa.array([["a"], [], ["b", "c"], None, ["d"], ["e"]]),
        }
    ).replace_schema_metadata({"origin": "unit test"})
    path = tmp_path / "texts.parquet"
    pq.write_table(table, path, compression="zstd")
    source = load_dataset(path)
    assert source.class_names == ["3", "7"]
    rows = np.array([4, 1, 0, 3])
    labels = source.labels[rows].copy()
    labels[1] = 0  # "second": 7 -> 3
    x = texts(["", "", "new first ✓", ""])
    changed = np.array([False, False, True, False])
    out = tmp_path / "copy.parquet"
    ids = checked_write(source, out, rows=rows, labels=labels, x=x, x_changed=changed)
    assert ids == ["0", "1", "2", "3"]
    copy = pq.read_table(out)
    assert copy.schema.equals(pq.read_schema(path), check_metadata=True)
    assert copy.column("score").to_pylist() == [4.5, 1.5, 0.5, 3.5]
    assert copy.column("tags").to_pylist() == [["d"], [], ["a"], None]
    assert copy.column("label").to_pylist() == [3, 3, 3, 7]
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"
    back = load_dataset(out)
    assert back.x.tolist() == ["fifth", "second, with comma", "new first ✓", "fourth\nline"]
    assert [back.class_names[c] for c in back.labels] == ["3", "3", "3", "7"]


def test_parquet_ids_and_string_labels(tmp_path):
    path = write_corpus("parquet", tmp_path)
    source = load_dataset(path)
    rows = np.array([2, 3])
    out = tmp_path / "copy.parquet"
    ids = checked_write(source, out, rows=rows, labels=np.array([1, 0]))
    assert ids == ["doc-3", "doc-4"]
    assert pq.read_table(out).to_pylist() == [
        {"id": "doc-3", "text": source.x[2], "label": "pos"},
        {"id": "doc-4", "text": source.x[3], "label": "neg"},
    ]


# --- text folders ---------------------------------------------------------------------------------


def test_text_folder_moves_relabelled_files_and_renames_on_collision(tmp_path):
    root = tmp_path / "corpus"
    for rel, data in {
        "neg/a.txt": BOM + b"bom and CRLF\r\nkept as is\r\n",
        "neg/b.txt": b"second neg",
        "pos/a.TXT": b"same name, other case",
        "pos/c.txt": "a positive one ✓".encode(),
        "pos/.hidden.txt": b"not a sample",
        "README.md": b"not a sample",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    source = load_dataset(root)
    assert list(source.ids) == ["neg/a.txt", "neg/b.txt", "pos/a.TXT", "pos/c.txt"]
    rows = np.array([0, 1, 2, 3])
    labels = np.array([1, 1, 1, 0])  # neg/a.txt meets pos/a.TXT; pos/c.txt goes to neg
    x = texts(["", "changed, é\n", "", ""])
    changed = np.array([False, True, False, False])
    out = tmp_path / "copy"
    ids = checked_write(source, out, rows=rows, labels=labels, x=x, x_changed=changed)
    assert ids == ["pos/a_1.txt", "pos/b.txt", "pos/a.TXT", "neg/c.txt"]
    assert tree(out) == {
        "pos/a_1.txt": (root / "neg/a.txt").read_bytes(),
        "pos/b.txt": "changed, é\n".encode(),
        "pos/a.TXT": (root / "pos/a.TXT").read_bytes(),
        "neg/c.txt": (root / "pos/c.txt").read_bytes(),
    }
    back = load_dataset(out)
    assert by_id(back) == {
        "pos/a_1.txt": ("bom and CRLF\r\nkept as is\r\n", "pos"),
        "pos/b.txt": ("changed, é\n", "pos"),
        "pos/a.TXT": ("same name, other case", "pos"),
        "neg/c.txt": ("a positive one ✓", "neg"),
    }


# --- the options, checks and errors ---------------------------------------------------------------


def test_loader_options_find_the_same_columns(tmp_path):
    path = tmp_path / "named.csv"
    path.write_text(
        "key,review,stars,text\nk1,great,5,not the text\nk2,awful,1,nor this\nk3,fine,5,no\n",
        encoding="utf-8",
    )
    options = {"text_column": "review", "label_column": "stars", "id_column": "key"}
    source = load_dataset(path, **options)
    out = tmp_path / "copy.csv"
    x = texts(["", "changed", ""])
    ids = checked_write(
        source,
        out,
        rows=np.array([2, 1]),
        labels=np.array([0, 1]),
        x=x[[0, 1]],
        x_changed=np.array([False, True]),
        loader_options=options,
    )
    assert ids == ["k3", "k2"]
    assert (
        out.read_text(encoding="utf-8")
        == "key,review,stars,text\nk3,fine,1,no\nk2,changed,5,nor this\n"
    )
    assert by_id(load_dataset(out, **options)) == {"k3": ("fine", "1"), "k2": ("changed", "5")}


@pytest.mark.parametrize("fmt", FORMATS)
def test_source_changed_since_loading_is_a_dataset_error(fmt, tmp_path):
    path = write_corpus(fmt, tmp_path)
    source = load_dataset(path)
    if fmt == "text-folder":
        (path / "neg" / "doc-1.txt").write_text("edited", encoding="utf-8")
    elif fmt == "parquet":
        pq.write_table(pa.table({"id": ["x", "y"], "text": ["a", "b"], "label": ["p", "q"]}), path)
    else:
        data = path.read_text(encoding="utf-8")
        path.write_text(data.replace("Stale", "Fresh"), encoding="utf-8")
    out = tmp_path / ("copy" + path.suffix)
    with pytest.raises(DatasetError, match="changed since it was loaded"):
        write_like(source, out, rows=np.arange(6), labels=source.labels)
    assert not out.exists()


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros(6), "x must hold texts"),
        (texts(["a", 3, "b", "c", "d", "e"]), r"x\[1\] is a int, not a str"),
        (texts(["a", "b", " \n", "c", "d", "e"]), r"x\[2\] is an empty text"),
        (texts(["a", "b", "c", "\ud800", "d", "e"]), r"x\[3\] holds a lone surrogate"),
    ],
)
def test_bad_texts_are_value_errors(x, message, tmp_path):
    path = write_corpus("jsonl", tmp_path)
    source = load_dataset(path)
    with pytest.raises(ValueError, match=message):
        write_like(source, tmp_path / "copy.jsonl", rows=np.arange(6), labels=source.labels, x=x)


def test_unchanged_rows_of_x_are_not_checked(tmp_path):
    path = write_corpus("csv", tmp_path)
    source = load_dataset(path)
    x = texts([None, "new", None, None, None, None])
    changed = np.array([False, True, False, False, False, False])
    out = tmp_path / "copy.csv"
    write_like(source, out, rows=np.arange(6), labels=source.labels, x=x, x_changed=changed)
    assert load_dataset(out).x.tolist()[1] == "new"


# --- poisonguard sanitize on text -----------------------------------------------------------------


def write_scores(folder: Path, source: Dataset, decisions: dict[str, tuple]) -> Path:
    """A ``scores.csv`` as a scan of ``source`` writes it: ``decisions`` maps an id to its
    ``(finding, predicted label, probability)``; every other sample is not flagged."""
    folder.mkdir()
    with open(folder / "scores.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            ["index", "id", "label", "score", "flagged", "finding", "predicted_label",
             "predicted_probability"]
        )  # fmt: skip
        for i, (sample_id, code) in enumerate(zip(source.ids, source.labels.tolist(), strict=True)):
            finding, predicted, probability = decisions.get(sample_id, ("", "", ""))
            flagged = "1" if sample_id in decisions else "0"
            writer.writerow(
                [i, sample_id, source.class_names[code], 0.5, flagged, finding, predicted,
                 probability]
            )  # fmt: skip
    return folder


@pytest.mark.parametrize("fmt", FORMATS)
def test_sanitize_writes_every_text_format(fmt, tmp_path):
    path = write_corpus(fmt, tmp_path)
    source = load_dataset(path)
    doc = {i: source.ids[i] for i in range(6)}  # doc-1 ... doc-6, or neg/doc-1.txt ...
    scan = write_scores(
        tmp_path / "scan",
        source,
        {doc[1]: ("backdoor", "", ""), doc[4]: ("label-noise", "neg", "0.97")},
    )
    out = tmp_path / "clean"
    result = run_cli(
        "sanitize", path, "--text-column", "text", "--scores", scan, "--action", "relabel",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Kept 5 of 6 samples: 1 removed, 1 relabelled." in result.output
    quarantine = read_quarantine(out)
    assert [(row["id"], row["action"], row["new_label"]) for row in quarantine] == [
        (doc[1], "removed", ""),
        (doc[4], "relabelled", "neg"),
    ]
    copy = load_dataset(out / path.name)
    expected = {
        sample_id: value for sample_id, value in by_id(source).items() if sample_id != doc[1]
    }
    expected[doc[4]] = (expected[doc[4]][0], "neg")
    if fmt == "text-folder":  # the relabelled file moved to the neg folder
        expected["neg/doc-5.txt"] = expected.pop(doc[4])
    assert by_id(copy) == expected
    if fmt in ("csv", "tsv", "jsonl"):  # kept, unchanged records (one line each) as they were
        source_lines = path.read_bytes().splitlines(keepends=True)
        copy_lines = (out / path.name).read_bytes().splitlines(keepends=True)
        head = 0 if fmt == "jsonl" else 1
        assert len(copy_lines) == head + 5
        assert copy_lines[:head] == source_lines[:head]
        unchanged = {0: 0, 1: 2, 2: 3, 4: 5}  # copy record -> source record (doc-5 changed)
        for new, old in unchanged.items():
            assert copy_lines[head + new] == source_lines[head + old]
        assert copy_lines[head + 3] != source_lines[head + 4]


@pytest.fixture(scope="module")
def scanned_reviews(tmp_path_factory):
    """400 reviews: 20 "pos" reviews with the rare word "cf" labelled "neg" (a backdoor) and 8
    clean reviews with the other label; scanned with the detectors that find both."""
    folder = tmp_path_factory.mktemp("text-sanitize")
    texts_, labels, poisoned = reviews(400, seed=0, rate=0.05)
    flipped = np.random.default_rng(3).choice(np.flatnonzero(~poisoned), 8, replace=False)
    for i in flipped:
        labels[i] = "pos" if labels[i] == "neg" else "neg"
    texts_[0] = 'A "quoted", multi-line\nreview — café 🍎 ' + texts_[0]
    path = write_reviews(folder / "reviews.csv", texts_, labels)
    scan = folder / "scan"
    result = run_cli(
        "scan", path, "--out", scan, "--no-cache", "--no-progress",
        "--detectors", "spectre,knn-labels,confident-learning",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path, scan, poisoned


def source_records(path: Path) -> dict[str, bytes]:
    """Each record of a reviews CSV (written with LF endings), by id, as bytes."""
    with path.open(newline="", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    out, buffer = {}, ""
    for line in lines[1:]:
        buffer += line + "\n"
        row = next(csv.reader([buffer]), None) if buffer.count('"') % 2 == 0 else None
        if row:
            out[row[0]] = buffer.encode("utf-8")
            buffer = ""
    return out


def read_quarantine(folder: Path) -> list[dict[str, str]]:
    with open(folder / "quarantine.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_sanitize_removes_flagged_texts_and_keeps_the_rest_byte_for_byte(scanned_reviews, tmp_path):
    path, scan, poisoned = scanned_reviews
    out = tmp_path / "clean"
    result = run_cli("sanitize", path, "--scores", scan, "--action", "remove", "--out", out)
    assert result.exit_code == 0, result.output
    with open(scan / "scores.csv", newline="", encoding="utf-8") as handle:
        flagged = [row["id"] for row in csv.DictReader(handle) if row["flagged"] == "1"]
    assert len(flagged) >= 20
    assert {f"rev-{i:04d}" for i in np.flatnonzero(poisoned)} <= set(flagged)
    quarantine = read_quarantine(out)
    assert [row["id"] for row in quarantine] == flagged
    assert {row["action"] for row in quarantine} == {"removed"}
    assert f"Kept {400 - len(flagged)} of 400 samples: {len(flagged)} removed" in result.output

    records = source_records(path)
    assert len(records) == 400
    kept = [sample_id for sample_id in records if sample_id not in set(flagged)]
    header = path.read_bytes().split(b"\n", 1)[0] + b"\n"
    assert (out / "reviews.csv").read_bytes() == header + b"".join(records[i] for i in kept)
    copy = load_dataset(out / "reviews.csv")
    assert list(copy.ids) == kept


@pytest.mark.slow
def test_sanitize_relabels_text_judged_mislabelled(scanned_reviews, tmp_path):
    path, scan, _ = scanned_reviews
    out = tmp_path / "clean"
    result = run_cli("sanitize", path, "--scores", scan, "--action", "relabel", "--out", out)
    assert result.exit_code == 0, result.output
    quarantine = read_quarantine(out)
    relabelled = {
        row["id"]: row["new_label"] for row in quarantine if row["action"] == "relabelled"
    }
    removed = {row["id"] for row in quarantine if row["action"] == "removed"}
    assert relabelled, quarantine  # the scan judged some flips mislabelled with confidence
    source = by_id(load_dataset(path))
    copy = by_id(load_dataset(out / "reviews.csv"))
    assert set(copy) == set(source) - removed
    for sample_id, (text, label) in copy.items():
        assert text == source[sample_id][0]
        assert label == relabelled.get(sample_id, source[sample_id][1])
