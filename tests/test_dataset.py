"""``poisonguard.dataset``: aligning a second dataset's classes with the audited one's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poisonguard.dataset import Dataset, RowNumbers, align_classes
from poisonguard.errors import DatasetError


def table(names: list[str], labels: list[int], width: int = 3, path: str = "a.csv") -> Dataset:
    n = len(labels)
    return Dataset(
        x=np.zeros((n, width), dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=names,
        ids=[str(i) for i in range(n)],
        kind="table",
        path=Path(path),
        format="csv",
    )


def test_labels_are_recoded_by_class_name():
    reference = table(["cat", "dog", "eel"], [0, 1, 2])
    other = table(["dog", "eel"], [0, 1, 1, 0], path="other.csv")  # its own codes: dog 0, eel 1
    aligned = align_classes(other, reference, role="test set")
    assert aligned.class_names == ["cat", "dog", "eel"]
    np.testing.assert_array_equal(aligned.labels, [1, 2, 2, 1])
    np.testing.assert_array_equal(other.labels, [0, 1, 1, 0])  # the input is not changed


def test_unknown_classes_and_other_shapes_are_refused_naming_the_file():
    reference = table(["cat", "dog"], [0, 1])
    with pytest.raises(DatasetError, match=r"other\.csv: held-out set has classes .*fox"):
        align_classes(
            table(["cat", "fox"], [0, 1], path="other.csv"), reference, role="held-out set"
        )
    with pytest.raises(DatasetError, match=r"trusted set samples have shape \(4,\)"):
        align_classes(table(["cat"], [0, 0], width=4), reference, role="trusted set")


def test_row_numbers_are_ids_made_on_demand():
    ids = RowNumbers(5)
    assert len(ids) == 5 and list(ids) == ["0", "1", "2", "3", "4"]
    assert ids[3] == "3" and ids[-1] == "4" and ids[1:3] == ["1", "2"]
    assert ids == ["0", "1", "2", "3", "4"] and ids == RowNumbers(5)
    assert ids != ["0", "1", "2", "3", "5"] and ids != RowNumbers(4) and ids != "01234"
    with pytest.raises(IndexError, match="out of range for 5 samples"):
        ids[5]
    assert [*ids, "x"][-2:] == ["4", "x"]
