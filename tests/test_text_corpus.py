"""The benchmark corpus reader (benchmarks/r_lazyload.py, benchmarks/text_corpus.py) on a small
lazy-load database built here byte by byte, as R writes one: no R and no Debian package needed."""

from __future__ import annotations

import gzip
import lzma
import struct
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ATTRIBUTES, TAG = 1 << 9, 1 << 10


def integer(value: int) -> bytes:
    return struct.pack(">i", value)


def char(text: str) -> bytes:
    data = text.encode("utf-8")
    return integer(9) + integer(len(data)) + data


def strings(*texts: str | None, attributes: bytes = b"") -> bytes:
    flags = 16 | (ATTRIBUTES if attributes else 0)
    items = b"".join(integer(9) + integer(-1) if t is None else char(t) for t in texts)
    return integer(flags) + integer(len(texts)) + items + attributes


def ints(*values: int, attributes: bytes = b"") -> bytes:
    flags = 13 | (ATTRIBUTES if attributes else 0)
    return integer(flags) + integer(len(values)) + b"".join(map(integer, values)) + attributes


def vector(*items: bytes, attributes: bytes = b"") -> bytes:
    flags = 19 | (ATTRIBUTES if attributes else 0)
    return integer(flags) + integer(len(items)) + b"".join(items) + attributes


def pairlist(*entries: tuple[bytes, bytes]) -> bytes:
    """``(tag, value)`` entries; a tag is :func:`symbol` bytes or a reference."""
    return b"".join(integer(2 | TAG) + tag + value for tag, value in entries) + integer(254)


def symbol(name: str) -> bytes:
    return integer(1) + char(name)


def reference(index: int) -> bytes:
    return integer(255 | (index << 8))


def serialized(item: bytes) -> bytes:
    return b"X\n" + integer(2) + integer(0x040201) + integer(0x020300) + item


# symbols are numbered in the order they first appear: levels 1, class 2, names 3, row.names 4
FRAME = vector(
    strings("Tasty.<br />Would buy again", "Stale"),
    ints(
        1,
        2,
        attributes=pairlist(
            (symbol("levels"), strings("great", "other")), (symbol("class"), strings("factor"))
        ),
    ),
    attributes=pairlist(
        (symbol("names"), strings("review", "score")),
        (reference(2), strings("tbl_df", "data.frame")),
        (symbol("row.names"), ints(-(2**31), -2)),
    ),
)


@pytest.fixture(scope="module")
def corpus_modules():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import r_lazyload
        import text_corpus

        yield r_lazyload, text_corpus
    finally:
        sys.path.remove(str(BENCHMARKS))


def write_database(folder: Path, name: str, item: bytes) -> Path:
    """``Rdata.rdx``/``Rdata.rdb`` holding ``name``, xz-compressed (R's LazyDataCompression)."""
    raw = serialized(item)
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
    entry = (
        struct.pack(">I", len(raw)) + b"Z" + lzma.compress(raw, lzma.FORMAT_RAW, filters=filters)
    )
    padding = b"\0" * 7  # the entry does not start at offset 0
    index = vector(
        vector(
            ints(len(padding), len(entry)), attributes=pairlist((symbol("names"), strings(name)))
        ),
        vector(),
        ints(3),
        attributes=pairlist((reference(1), strings("variables", "references", "compressed"))),
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Rdata.rdb").write_bytes(padding + entry)
    (folder / "Rdata.rdx").write_bytes(gzip.compress(serialized(index)))
    return folder


def test_unserialize_a_data_frame_with_a_factor(corpus_modules):
    r_lazyload, _ = corpus_modules
    frame = r_lazyload.unserialize(serialized(FRAME))
    assert r_lazyload.data_frame(frame) == {
        "review": ["Tasty.<br />Would buy again", "Stale"],
        "score": ["great", "other"],
    }


def test_code_is_refused_not_read(corpus_modules):
    r_lazyload, _ = corpus_modules
    closure = integer(3) + integer(254) * 3
    with pytest.raises(ValueError, match="type 3 is not data"):
        r_lazyload.unserialize(serialized(closure))
    with pytest.raises(ValueError, match="not a data frame"):
        r_lazyload.data_frame(r_lazyload.unserialize(serialized(strings("a"))))


def test_read_lazyload_and_the_corpus_csv(corpus_modules, tmp_path):
    r_lazyload, text_corpus = corpus_modules
    folder = write_database(tmp_path / "data", "training_data", FRAME)
    columns = r_lazyload.data_frame(r_lazyload.read_lazyload(folder, "training_data"))
    assert columns["score"] == ["great", "other"]
    with pytest.raises(KeyError, match="training_data"):
        r_lazyload.read_lazyload(folder, "testing_data")

    split = text_corpus.TextSplit(texts=columns["review"], labels=columns["score"], products=[])
    path = text_corpus.write_csv(split, tmp_path / "train.csv")
    from poisonguard.loaders import load_dataset

    data = load_dataset(path)
    assert data.kind == "text" and data.x.tolist() == columns["review"]
    assert data.class_names == ["great", "other"]


def test_the_installed_corpus_when_present(corpus_modules):
    _, text_corpus = corpus_modules
    try:
        train, test = text_corpus.load_text_corpus(install=False)
    except RuntimeError:
        pytest.skip("r-cran-modeldata is neither installed nor extracted here")
    assert (len(train), len(test)) == (4000, 1000)
    assert set(train.labels) == set(test.labels) == {"great", "other"}
