"""A real labelled two-class text corpus for benchmarks: Amazon fine-food reviews.

The corpus is ``small_fine_foods`` of R's ``modeldata`` package (Max Kuhn / Posit, MIT licence),
as Debian ships it in ``r-cran-modeldata`` (1.1.0-1 in Debian 12). It is a sample of the SNAP
"Amazon Fine Foods" reviews (McAuley & Leskovec, WWW 2013,
https://snap.stanford.edu/data/web-FineFoods.html): one review per product, each labelled
``great`` (the reviewer gave 5 stars) or ``other`` (1 to 4 stars):

=====  ======  =====  =====  =====================================================
split  texts   great  other  length
=====  ======  =====  =====  =====================================================
train  4,000   2,600  1,400  median 51 words / 277 characters (10 %-90 %: 23-144 words)
test   1,000   658    342    median 51 words / 279 characters
=====  ======  =====  =====  =====================================================

Every text is distinct and every review is of a different product (5,000 products). The texts
are as Amazon stored them: 910 training and 238 test reviews hold HTML line breaks (``<br />``),
12 hold non-ASCII characters. "5 stars or not" is a noisy line between classes (a 4-star review
reads like a 5-star one), so a share of the labels look wrong to any model: natural ambiguity,
not poisoning.

**Nothing is fetched at run time but that Debian package.** :func:`locate_modeldata` uses the
package where it is installed (``apt-get install -y r-cran-modeldata``, which also installs R:
about 650 packages), or else its extracted copy in the corpus folder (``$POISONGUARD_CORPUS_DIR``,
default ``~/.cache/poisonguard/corpora``), which it makes itself when missing with (4 MB, no R):

    apt-get download r-cran-modeldata
    dpkg-deb -x r-cran-modeldata_*.deb "$POISONGUARD_CORPUS_DIR/r-cran-modeldata"

(``apt-get update`` first on a machine whose package lists are empty). The data sit in R's
lazy-load database, read without R by :mod:`r_lazyload`.

    python benchmarks/text_corpus.py                          # locate (install) and summarise
    python benchmarks/text_corpus.py --out-dir /tmp/foods     # /tmp/foods/{train,test}.csv

The CSV files have the columns ``text,label`` (the label is ``great`` or ``other``), one review a
row, in the package's order: ``poisonguard`` reads them as text datasets.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from r_lazyload import data_frame, read_lazyload  # noqa: E402

DEBIAN_PACKAGE = "r-cran-modeldata"
DATA_SUBDIR = Path("usr/lib/R/site-library/modeldata/data")
SYSTEM_DATA_DIR = Path("/") / DATA_SUBDIR
SPLITS = {"train": "training_data", "test": "testing_data"}
"""Each split's data frame in modeldata (``small_fine_foods`` holds both)."""
EXPECTED = {"train": {"great": 2600, "other": 1400}, "test": {"great": 658, "other": 342}}
"""Class counts of each split in r-cran-modeldata 1.1.0; another version is used with a warning."""


@dataclass(frozen=True)
class TextSplit:
    """One split: ``texts[i]`` has the label ``labels[i]`` (``"great"`` or ``"other"``)."""

    texts: list[str]
    labels: list[str]
    products: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def corpus_dir() -> Path:
    """Where extracted corpora live: ``$POISONGUARD_CORPUS_DIR``, else
    ``~/.cache/poisonguard/corpora``."""
    given = os.environ.get("POISONGUARD_CORPUS_DIR")
    return Path(given) if given else Path.home() / ".cache" / "poisonguard" / "corpora"


def locate_modeldata(*, install: bool = True) -> Path:
    """The ``data`` folder of modeldata (holding ``Rdata.rdx``/``Rdata.rdb``).

    The installed package's first, else the extracted copy in :func:`corpus_dir`; with
    ``install``, a missing copy is made with ``apt-get download`` and ``dpkg-deb -x``. Raises
    ``RuntimeError`` with the commands to run by hand when that fails.
    """
    if (SYSTEM_DATA_DIR / "Rdata.rdx").is_file():
        return SYSTEM_DATA_DIR
    extracted = corpus_dir() / DEBIAN_PACKAGE
    if (extracted / DATA_SUBDIR / "Rdata.rdx").is_file():
        return extracted / DATA_SUBDIR
    how = (
        f"apt-get update && apt-get download {DEBIAN_PACKAGE} && "
        f"dpkg-deb -x {DEBIAN_PACKAGE}_*.deb {extracted} (or apt-get install -y {DEBIAN_PACKAGE})"
    )
    if not install:
        raise RuntimeError(f"{DEBIAN_PACKAGE} is neither installed nor extracted; run: {how}")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError(f"apt-get and dpkg-deb are needed to fetch {DEBIAN_PACKAGE}: {how}")
    extracted.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=extracted.parent) as tmp:
        fetched = subprocess.run(
            ["apt-get", "download", DEBIAN_PACKAGE], cwd=tmp, capture_output=True, text=True
        )
        debs = sorted(Path(tmp).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if fetched.returncode != 0 or not debs:
            raise RuntimeError(
                f"apt-get download {DEBIAN_PACKAGE} failed ({fetched.stderr.strip()[-300:]}); "
                f"run: {how}"
            )
        partial = Path(tmp) / "extracted"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(partial)], check=True)
        if not (partial / DATA_SUBDIR / "Rdata.rdx").is_file():
            raise RuntimeError(f"{debs[0].name} has no {DATA_SUBDIR}/Rdata.rdx")
        if extracted.exists():
            shutil.rmtree(extracted)
        partial.rename(extracted)
    print(f"extracted {debs[0].name} to {extracted}", file=sys.stderr)
    return extracted / DATA_SUBDIR


def load_split(split: str, *, install: bool = True) -> TextSplit:
    """The ``train`` or ``test`` split of the fine-food reviews, in the package's order (the
    same on every run: nothing is shuffled or drawn)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    columns = data_frame(read_lazyload(locate_modeldata(install=install), SPLITS[split]))
    texts, labels, products = columns["review"], columns["score"], columns["product"]
    if any(not isinstance(t, str) or not t.strip() for t in texts) or None in labels:
        raise RuntimeError(f"{DEBIAN_PACKAGE} {split}: a review or its score is missing")
    counts = dict(Counter(labels))
    if counts != EXPECTED[split]:
        print(
            f"warning: {split} has classes {counts}, expected {EXPECTED[split]} "
            f"(another {DEBIAN_PACKAGE} version?)",
            file=sys.stderr,
        )
    return TextSplit(texts=list(texts), labels=list(labels), products=list(products))


def load_text_corpus(*, install: bool = True) -> tuple[TextSplit, TextSplit]:
    """``(train, test)``: 4,000 and 1,000 reviews, ``great`` or ``other``."""
    return load_split("train", install=install), load_split("test", install=install)


def write_csv(split: TextSplit, path: str | Path) -> Path:
    """Write ``text,label`` rows (UTF-8, ``\\n`` line ends, quoted where needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(zip(split.texts, split.labels, strict=True))
    return path


def summary(name: str, split: TextSplit) -> str:
    """One line: size, classes, word and character lengths."""
    words = [len(t.split()) for t in split.texts]
    chars = [len(t) for t in split.texts]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(Counter(split.labels).items()))
    return (
        f"{name}: {len(split)} texts ({counts}); words median {statistics.median(words):g}, "
        f"max {max(words)}; characters median {statistics.median(chars):g}, max {max(chars)}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, help="Write train.csv and test.csv here.")
    parser.add_argument(
        "--no-install", action="store_true", help=f"Fail instead of fetching {DEBIAN_PACKAGE}."
    )
    args = parser.parse_args(argv)
    train, test = load_text_corpus(install=not args.no_install)
    print(f"corpus: {locate_modeldata(install=False)} (small_fine_foods)")
    for name, split in (("train", train), ("test", test)):
        print(summary(name, split))
        if args.out_dir is not None:
            print(f"  wrote {write_csv(split, args.out_dir / f'{name}.csv')}")


if __name__ == "__main__":
    main()
