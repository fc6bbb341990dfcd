"""Writing a changed copy of a dataset in its own format (``poisonguard.writers``).

Every write goes through :func:`checked_write`, which also checks that the source is unchanged
byte for byte and that nothing but the destination appeared beside it.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import poisonguard.writers.csv_table as csv_writer
import poisonguard.writers.hdf5 as hdf5_writer
import poisonguard.writers.image_folder as image_writer
import poisonguard.writers.npz as npz_writer
from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError, OutputError, PoisonGuardError
from poisonguard.loaders import load_dataset
from poisonguard.writers import prepare_output_dir, write_like

N = 12


# --- sources ---------------------------------------------------------------------------------


def make_hdf5_nhw(folder: Path) -> tuple[Path, dict]:
    """x (N, 6, 6) uint8 (gzip), y int16 with classes 3/7/9, a per-sample array, an unrelated
    array, a group with a dataset, attributes and a soft link."""
    rng = np.random.default_rng(1)
    path = folder / "digits.h5"
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "digits"
        f.attrs["version"] = np.arange(3, dtype=np.int16)
        x = f.create_dataset(
            "x", data=rng.integers(0, 256, (N, 6, 6), dtype=np.uint8), compression="gzip"
        )
        x.attrs["units"] = "pixels"
        f["y"] = np.array([3, 7, 9] * (N // 3), dtype=np.int16)
        f["extra"] = rng.normal(size=(N, 2)).astype(np.float64)
        f["classes"] = np.array([3, 7, 9, 11, 13], dtype=np.int64)
        meta = f.create_group("meta")
        meta.attrs["source"] = "unit test"
        meta["info"] = np.arange(5.0)
        f["meta/link"] = h5py.SoftLink("/classes")
    return path, {}


def make_hdf5_nhwc(folder: Path) -> tuple[Path, dict]:
    """x (N, 5, 5, 4) uint8 RGBA under ``train/images``, y byte-string labels."""
    rng = np.random.default_rng(2)
    path = folder / "pets.hdf5"
    with h5py.File(path, "w") as f:
        f["train/images"] = rng.integers(0, 256, (N, 5, 5, 4), dtype=np.uint8)
        f["train/labels"] = np.array([b"cat", b"dog"] * (N // 2))
    return path, {"x_key": "train/images", "y_key": "train/labels"}


def make_npz(folder: Path) -> tuple[Path, dict]:
    """Compressed: x (N, 4, 4, 3) float32, one-hot y, a per-sample and an unrelated array."""
    rng = np.random.default_rng(3)
    path = folder / "shapes.npz"
    codes = np.arange(N) % 3
    np.savez_compressed(
        path,
        x=rng.random((N, 4, 4, 3), dtype=np.float32),
        y=np.eye(3, dtype=np.uint8)[codes],
        weights=rng.random(N),
        mean=np.array([0.5, 0.4, 0.3]),
    )
    return path, {}


def make_npz_plain(folder: Path) -> tuple[Path, dict]:
    """Uncompressed: a table x (N, 3) float64, integer labels and string ids."""
    rng = np.random.default_rng(4)
    path = folder / "table.npz"
    np.savez(
        path,
        features=rng.normal(size=(N, 3)),
        target=np.arange(N) % 2,
        ids=np.array([f"s{i:02d}" for i in range(N)]),
    )
    return path, {"x_key": "features", "y_key": "target"}


def make_csv_ids(folder: Path) -> tuple[Path, dict]:
    """String labels, an id column, an integer feature column and quoted cells."""
    rng = np.random.default_rng(5)
    path = folder / "iris.csv"
    lines = ["name,f1,count,f2,species"]
    for i in range(N):
        a, b = rng.normal(size=2)
        species = ["setosa", "versicolor", "virginica"][i % 3]
        quoted = f'"{species}"' if i == 4 else species
        lines.append(f"n{i:02d},{float(a)!r},{int(rng.integers(0, 50))},{b:.3f},{quoted}")
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path, {"label_column": "species", "id_column": "name"}


def make_csv_plain(folder: Path) -> tuple[Path, dict]:
    """Integer labels, no id column, no newline after the last row."""
    rng = np.random.default_rng(6)
    path = folder / "plain.csv"
    lines = ["a,b,label"]
    for i in range(N):
        lines.append(f"{rng.normal():.4f},{rng.normal():.6f},{i % 2}")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path, {}


def make_images(folder: Path) -> tuple[Path, dict]:
    """Two classes of 8x8 images: PNG L, RGB, RGBA and palette, a JPEG, a 10x12 odd-size PNG, a
    name used in both classes, plus a hidden file, a text file and a root README."""
    rng = np.random.default_rng(7)
    root = folder / "pets"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)

    def gray(h: int = 8, w: int = 8) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))

    def rgb() -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))

    gray().save(root / "cat" / "a.png")
    rgb().save(root / "cat" / "b.png")
    rgb().save(root / "cat" / "c.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)).save(root / "cat" / "f.png")
    gray().save(root / "dog" / "a.png")
    gray(10, 12).save(root / "dog" / "odd.png")
    rgb().quantize(16).save(root / "dog" / "p.png")
    rgb().save(root / "dog" / "e.png")
    (root / "dog" / ".hidden.png").write_bytes(b"not an image")
    (root / "cat" / "notes.txt").write_text("notes")
    (root / "README.txt").write_text("read me")
    return root, {}


MAKERS = {
    "hdf5-nhw": make_hdf5_nhw,
    "hdf5-nhwc": make_hdf5_nhwc,
    "npz": make_npz,
    "npz-plain": make_npz_plain,
    "csv-ids": make_csv_ids,
    "csv-plain": make_csv_plain,
    "images": make_images,
}


@pytest.fixture(params=sorted(MAKERS))
def any_source(request, tmp_path) -> tuple[Dataset, dict]:
    return build(request.param, tmp_path)


def build(kind: str, tmp_path: Path) -> tuple[Dataset, dict]:
    src_dir = tmp_path / "src"
    src_dir.mkdir(exist_ok=True)
    path, options = MAKERS[kind](src_dir)
    return load_dataset(path, **options), options


# --- helpers ---------------------------------------------------------------------------------


def digests(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder, by relative path."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


def checked_write(source: Dataset, destination: Path, options: dict, **kwargs) -> list[str]:
    """``write_like``, checking the source is unchanged and only ``destination`` was added."""
    before = digests(source.path)
    parent = destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    listed = sorted(p.name for p in parent.iterdir())
    ids = write_like(source, destination, loader_options=options, **kwargs)
    assert digests(source.path) == before
    assert sorted(p.name for p in parent.iterdir()) == sorted({*listed, destination.name})
    return ids


def out_path(tmp_path: Path, source: Dataset) -> Path:
    return tmp_path / "out" / source.path.name


def by_id(dataset: Dataset) -> dict[str, int]:
    return {sample_id: i for i, sample_id in enumerate(dataset.ids)}


def reload(path: Path, options: dict) -> Dataset:
    return load_dataset(path, **options)


# --- identity copy ---------------------------------------------------------------------------


def test_identity_copy_loads_back_equal(any_source, tmp_path):
    source, options = any_source
    rows = np.arange(source.n_samples)
    dst = out_path(tmp_path, source)
    ids = checked_write(source, dst, options, rows=rows, labels=source.labels.copy())
    assert ids == source.ids
    copy = reload(dst, options)
    assert copy.class_names == source.class_names
    assert copy.ids == source.ids
    np.testing.assert_array_equal(copy.labels, source.labels)
    assert copy.x.dtype == source.x.dtype
    np.testing.assert_array_equal(copy.x, source.x)
    assert copy.feature_names == source.feature_names


def test_identity_copy_of_image_folder_is_byte_identical(tmp_path):
    source, options = build("images", tmp_path)
    dst = tmp_path / "out" / "pets"
    checked_write(source, dst, options, rows=np.arange(source.n_samples), labels=source.labels)
    expected = {
        k: v for k, v in digests(source.path).items() if k.removeprefix("pets/") in source.ids
    }
    assert digests(dst) == expected
    assert not (dst / "dog" / ".hidden.png").exists()
    assert not (dst / "cat" / "notes.txt").exists()
    assert not (dst / "README.txt").exists()


@pytest.mark.parametrize("kind", ["csv-ids", "csv-plain"])
def test_identity_copy_of_csv_is_byte_identical(kind, tmp_path):
    source, options = build(kind, tmp_path)
    dst = out_path(tmp_path, source)
    checked_write(source, dst, options, rows=np.arange(source.n_samples), labels=source.labels)
    assert dst.read_bytes() == source.path.read_bytes()


def test_identity_copy_of_hdf5_keeps_structure(tmp_path):
    source, options = build("hdf5-nhw", tmp_path)
    dst = out_path(tmp_path, source)
    checked_write(source, dst, options, rows=np.arange(N), labels=source.labels)
    with h5py.File(source.path) as old, h5py.File(dst) as new:
        assert sorted(new) == sorted(old)
        assert "ids" not in new
        assert new.attrs["title"] == "digits"
        np.testing.assert_array_equal(new.attrs["version"], old.attrs["version"])
        assert new.attrs["version"].dtype == np.int16
        assert new["x"].attrs["units"] == "pixels"
        assert new["x"].dtype == np.uint8 and new["x"].chunks is not None
        assert new["x"].compression == "gzip"
        assert new["y"].dtype == np.int16
        assert new["meta"].attrs["source"] == "unit test"
        assert new["meta"].get("link", getlink=True).path == "/classes"
        for key in ("x", "y", "extra", "classes", "meta/info"):
            np.testing.assert_array_equal(new[key][()], old[key][()])


def test_identity_copy_of_npz_keeps_members_and_compression(tmp_path):
    for kind in ("npz", "npz-plain"):
        source, options = build(kind, tmp_path)
        dst = out_path(tmp_path, source)
        checked_write(source, dst, options, rows=np.arange(N), labels=source.labels)
        with zipfile.ZipFile(source.path) as old, zipfile.ZipFile(dst) as new:
            assert [(i.filename, i.compress_type) for i in new.infolist()] == [
                (i.filename, i.compress_type) for i in old.infolist()
            ]
        with np.load(source.path) as old, np.load(dst) as new:
            for key in old.files:
                assert new[key].dtype == old[key].dtype
                np.testing.assert_array_equal(new[key], old[key])


# --- label changes ---------------------------------------------------------------------------


def changed_labels(source: Dataset, positions: list[int]) -> np.ndarray:
    labels = source.labels.copy()
    for i in positions:
        labels[i] = (labels[i] + 1) % source.n_classes
    return labels


def test_label_change_loads_back_with_new_labels(any_source, tmp_path):
    source, options = any_source
    labels = changed_labels(source, [0, 5])
    dst = out_path(tmp_path, source)
    ids = checked_write(source, dst, options, rows=np.arange(source.n_samples), labels=labels)
    copy = reload(dst, options)
    assert copy.class_names == source.class_names
    where = by_id(copy)
    order = [where[i] for i in ids]
    np.testing.assert_array_equal(copy.labels[order], labels)
    np.testing.assert_array_equal(copy.x[order], source.x)


def test_int_labels_keep_dtype_and_values(tmp_path):
    source, options = build("hdf5-nhw", tmp_path)
    labels = changed_labels(source, [0])  # class 3 -> class 7
    dst = out_path(tmp_path, source)
    checked_write(source, dst, options, rows=np.arange(N), labels=labels)
    with h5py.File(source.path) as old, h5py.File(dst) as new:
        assert new["y"].dtype == np.int16
        expected = old["y"][()]
        expected[0] = 7
        np.testing.assert_array_equal(new["y"][()], expected)


def test_string_and_one_hot_labels_keep_their_representation(tmp_path):
    source, options = build("hdf5-nhwc", tmp_path)
    dst = out_path(tmp_path, source)
    checked_write(source, dst, options, rows=np.arange(N), labels=changed_labels(source, [0]))
    with h5py.File(dst) as f:
        y = f["train/labels"][()]
    assert y.dtype.kind == "S"
    assert y[:3].tolist() == [b"dog", b"dog", b"cat"]

    source, options = build("npz", tmp_path)
    dst = out_path(tmp_path, source)
    checked_write(source, dst, options, rows=np.arange(N), labels=changed_labels(source, [0]))
    with np.load(dst) as archive:
        y = archive["y"]
    assert y.dtype == np.uint8 and y.shape == (N, 3)
    assert y[0].tolist() == [0, 1, 0] and y[1].tolist() == [0, 1, 0] and y[2].tolist() == [0, 0, 1]


def test_csv_label_change_touches_only_the_label_cell(tmp_path):
    source, options = build("csv-ids", tmp_path)
    labels = changed_labels(source, [1, 4])  # versicolor -> virginica, "versicolor" quoted
    dst = out_path(tmp_path, source)
    checked_write(source, dst, options, rows=np.arange(N), labels=labels)
    old = source.path.read_bytes().decode().split("\r\n")
    new = dst.read_bytes().decode().split("\r\n")
    assert len(new) == len(old)
    assert new[2] == old[2].rsplit(",", 1)[0] + ",virginica"
    assert new[5] == old[5].rsplit(",", 1)[0] + ",virginica"
    assert [line for i, line in enumerate(new) if i not in (2, 5)] == [
        line for i, line in enumerate(old) if i not in (2, 5)
    ]


def test_image_moves_to_the_folder_of_its_new_label(tmp_path):
    source, options = build("images", tmp_path)
    row = source.ids.index("cat/a.png")
    labels = source.labels.copy()
    labels[row] = source.class_names.index("dog")
    dst = tmp_path / "out" / "pets"
    ids = checked_write(source, dst, options, rows=np.arange(source.n_samples), labels=labels)
    assert ids[row] == "dog/a_1.png"  # dog/a.png stays; the moved file gets a suffix
    assert ids[source.ids.index("dog/a.png")] == "dog/a.png"
    assert not (dst / "cat" / "a.png").exists()
    assert (dst / "dog" / "a_1.png").read_bytes() == (source.path / "cat" / "a.png").read_bytes()
    copy = reload(dst, options)
    assert copy.labels[copy.ids.index("dog/a_1.png")] == source.class_names.index("dog")
    assert len(copy.ids) == source.n_samples


def test_csv_with_bom_multiline_cells_and_blank_lines(tmp_path):
    path = tmp_path / "src" / "odd.csv"
    path.parent.mkdir()
    text = '\ufeffID,x1,x2,Label\n"a\nb",1,2.5,cat\n\nc,3,4.0,dog\n"d","5","6","cat"\ne,7,8,dog'
    path.write_bytes(text.encode())
    source = load_dataset(path)
    x = source.x.copy()
    x[:, 1] += 0.5
    rows = np.array([3, 2, 0])
    dst = tmp_path / "out" / "odd.csv"
    ids = checked_write(
        source,
        dst,
        {},
        rows=rows,
        labels=np.array([0, 0, 1]),
        x=x[rows],
        x_changed=np.array([False, True, True]),
    )
    assert ids == ["e", "d", "a\nb"]
    expected = '\ufeffID,x1,x2,Label\ne,7,8,cat\n"d","5","6.5","cat"\n"a\nb",1,3.0,dog\n'
    assert dst.read_bytes() == expected.encode()
    copy = load_dataset(dst)
    assert copy.ids == ids
    np.testing.assert_array_equal(copy.x, [[7, 8], [5, 6.5], [1, 3]])


# --- sample changes --------------------------------------------------------------------------


def changed_x(source: Dataset, positions: list[int]) -> tuple[np.ndarray, np.ndarray]:
    x = source.x.copy()
    if x.dtype == np.uint8:
        x[positions] = 255 - x[positions]
    else:
        x[positions] = x[positions] * np.float32(2.5) + np.float32(0.125)
    mask = np.zeros(source.n_samples, dtype=bool)
    mask[positions] = True
    return x, mask


def test_x_change_writes_new_values_and_keeps_the_rest(any_source, tmp_path):
    source, options = any_source
    if source.format == "image-folder":
        positions = [source.ids.index(i) for i in ("cat/a.png", "cat/b.png", "dog/e.png")]
    else:
        positions = [1, 6]
    x, mask = changed_x(source, positions)
    x[~mask] = 0  # rows not marked changed must come from the source file, not from x
    dst = out_path(tmp_path, source)
    rows = np.arange(source.n_samples)
    ids = checked_write(source, dst, options, rows=rows, labels=source.labels, x=x, x_changed=mask)
    copy = reload(dst, options)
    where = by_id(copy)
    order = [where[i] for i in ids]
    assert copy.x.dtype == source.x.dtype
    np.testing.assert_array_equal(copy.x[order][mask], x[mask])
    np.testing.assert_array_equal(copy.x[order][~mask], source.x[~mask])
    np.testing.assert_array_equal(copy.labels[order], source.labels)


def test_unchanged_rows_keep_stored_values_and_alpha(tmp_path):
    source, options = build("hdf5-nhwc", tmp_path)
    x, mask = changed_x(source, [2])
    dst = out_path(tmp_path, source)
    checked_write(
        source, dst, options, rows=np.arange(N), labels=source.labels, x=x, x_changed=mask
    )
    with h5py.File(source.path) as old, h5py.File(dst) as new:
        before, after = old["train/images"][()], new["train/images"][()]
    assert after.shape == before.shape and after.dtype == np.uint8
    np.testing.assert_array_equal(after[~mask], before[~mask])
    np.testing.assert_array_equal(after[2, ..., 3], before[2, ..., 3])  # alpha kept
    np.testing.assert_array_equal(after[2, ..., :3], 255 - before[2, ..., :3])


def test_integer_samples_are_rounded_and_clipped(tmp_path):
    source, options = build("hdf5-nhw", tmp_path)
    x = source.x.astype(np.float32)
    x[0] = 300.0
    x[1] = -4.0
    x[2] = 10.6
    mask = np.zeros(N, dtype=bool)
    mask[:3] = True
    dst = out_path(tmp_path, source)
    checked_write(
        source, dst, options, rows=np.arange(N), labels=source.labels, x=x, x_changed=mask
    )
    with h5py.File(dst) as f:
        stored = f["x"][()]
    assert stored.dtype == np.uint8
    assert (stored[0] == 255).all() and (stored[1] == 0).all() and (stored[2] == 11).all()


def test_csv_changed_cells_round_trip_and_integer_cells_stay_integers(tmp_path):
    source, options = build("csv-ids", tmp_path)
    x = source.x.copy()
    x[3] = [np.float32(0.1), np.float32(17.0), np.float32(-1234.5678)]
    mask = np.zeros(N, dtype=bool)
    mask[3] = True
    dst = out_path(tmp_path, source)
    checked_write(
        source, dst, options, rows=np.arange(N), labels=source.labels, x=x, x_changed=mask
    )
    line = dst.read_bytes().decode().split("\r\n")[4]
    assert line == f"n03,0.1,17,-1234.5677,{source.class_names[source.labels[3]]}"
    np.testing.assert_array_equal(reload(dst, options).x, x)


def test_reencoded_images_keep_format_size_and_mode(tmp_path):
    source, options = build("images", tmp_path)
    names = ["cat/a.png", "cat/b.png", "cat/c.jpg", "cat/f.png", "dog/odd.png", "dog/p.png"]
    positions = [source.ids.index(n) for n in names]
    x, mask = changed_x(source, positions)
    dst = tmp_path / "out" / "pets"
    rows = np.arange(source.n_samples)
    checked_write(source, dst, options, rows=rows, labels=source.labels, x=x, x_changed=mask)
    for name in names:
        with Image.open(source.path / name) as old, Image.open(dst / name) as new:
            assert (new.format, new.size, new.mode) == (old.format, old.size, old.mode), name
            if name == "cat/f.png":
                np.testing.assert_array_equal(new.getchannel("A"), old.getchannel("A"))
    unchanged = [i for i in source.ids if i not in names]
    for name in unchanged:
        assert (dst / name).read_bytes() == (source.path / name).read_bytes()
    copy = reload(dst, options)
    where = by_id(copy)
    for name in ("cat/a.png", "cat/b.png", "cat/f.png"):
        np.testing.assert_array_equal(copy.x[where[name]], x[source.ids.index(name)])
    jpeg = source.ids.index("cat/c.jpg")
    error = np.abs(copy.x[where["cat/c.jpg"]].astype(int) - x[jpeg].astype(int)).mean()
    assert error < 10
    with Image.open(dst / "dog/odd.png") as image:
        assert image.size == (12, 10)  # (W, H) of the source file, not the loaded 8x8


# --- subsets ---------------------------------------------------------------------------------


def test_subset_keeps_rows_in_order_and_ids_traceable(any_source, tmp_path, monkeypatch):
    monkeypatch.setattr(hdf5_writer, "rows_per_chunk", lambda row_bytes: 2)
    monkeypatch.setattr(hdf5_writer, "SLICE_SLACK_ROWS", 0)  # exercise point selections too
    source, options = any_source
    rows = np.array([7, 0, 3, 11, 5, 2])
    rows = rows[rows < source.n_samples]
    dst = out_path(tmp_path, source)
    ids = checked_write(source, dst, options, rows=rows, labels=source.labels[rows])
    copy = reload(dst, options)
    assert copy.n_samples == rows.shape[0]
    if source.format == "csv" and "id_column" not in options:
        assert ids == [str(i) for i in range(rows.shape[0])]
        assert copy.ids == ids
    elif source.format != "image-folder":
        assert ids == [source.ids[r] for r in rows]
        assert copy.ids == ids  # source ids kept, an ids array added where there was none
    else:
        assert ids == [source.ids[r] for r in rows]
        assert sorted(copy.ids) == sorted(ids)
    where = by_id(copy)
    order = [where[i] for i in ids]
    np.testing.assert_array_equal(copy.x[order], source.x[rows])
    names = [source.class_names[c] for c in source.labels[rows]]
    assert [copy.class_names[c] for c in copy.labels[order]] == names


def test_subset_of_hdf5_adds_ids_and_subsets_per_sample_arrays(tmp_path):
    source, options = build("hdf5-nhw", tmp_path)
    rows = np.array([9, 1, 4])
    dst = out_path(tmp_path, source)
    checked_write(source, dst, options, rows=rows, labels=source.labels[rows])
    with h5py.File(source.path) as old, h5py.File(dst) as new:
        assert new["ids"].dtype == np.int64
        np.testing.assert_array_equal(new["ids"][()], rows)
        np.testing.assert_array_equal(new["extra"][()], old["extra"][()][rows])
        np.testing.assert_array_equal(new["classes"][()], old["classes"][()])
        np.testing.assert_array_equal(new["meta/info"][()], old["meta/info"][()])


def test_subset_of_npz_with_ids_keeps_them_and_adds_none(tmp_path):
    source, options = build("npz-plain", tmp_path)
    rows = np.array([2, 3, 10])
    dst = out_path(tmp_path, source)
    ids = checked_write(source, dst, options, rows=rows, labels=source.labels[rows])
    assert ids == ["s02", "s03", "s10"]
    with np.load(dst) as archive:
        assert sorted(archive.files) == ["features", "ids", "target"]
        assert archive["ids"].tolist() == ids
    with zipfile.ZipFile(dst) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}


def test_subset_of_compressed_npz_adds_compressed_ids(tmp_path):
    source, options = build("npz", tmp_path)
    rows = np.array([0, 8])
    dst = out_path(tmp_path, source)
    checked_write(source, dst, options, rows=rows, labels=source.labels[rows])
    with zipfile.ZipFile(dst) as archive:
        assert archive.getinfo("ids.npy").compress_type == zipfile.ZIP_DEFLATED
    with np.load(source.path) as old, np.load(dst) as new:
        assert new["ids"].tolist() == [0, 8]
        np.testing.assert_array_equal(new["weights"], old["weights"][rows])
        np.testing.assert_array_equal(new["mean"], old["mean"])


def test_subset_of_image_folder_leaves_out_emptied_classes_and_other_files(tmp_path):
    source, options = build("images", tmp_path)
    keep = ["dog/e.png", "cat/b.png"]
    rows = np.array([source.ids.index(i) for i in keep])
    dst = tmp_path / "out" / "pets"
    ids = checked_write(source, dst, options, rows=rows, labels=source.labels[rows])
    assert ids == keep
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == sorted(keep)


# --- atomicity and safety --------------------------------------------------------------------


def fail(*args, **kwargs):
    raise RuntimeError("disk on fire")


FAILURES = {
    "hdf5-nhw": (hdf5_writer, "_read_rows"),
    "npz": (npz_writer, "_write_array"),
    "csv-ids": (csv_writer, "_render"),
    "images": (image_writer, "encode_like"),
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_write_leaves_no_destination_and_no_temporary(
    kind, existing, tmp_path, monkeypatch
):
    source, options = build(kind, tmp_path)
    dst = out_path(tmp_path, source)
    dst.parent.mkdir()
    if existing:
        if source.format == "image-folder":
            (dst / "old").mkdir(parents=True)
            (dst / "old" / "keep.txt").write_text("previous")
        else:
            dst.write_text("previous")
    before = digests(dst.parent)
    source_before = digests(source.path)
    monkeypatch.setattr(*FAILURES[kind], fail)
    x, mask = changed_x(source, [source.n_samples - 1])  # the failing step runs late
    labels = changed_labels(source, [source.n_samples - 1])
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_like(
            source,
            dst,
            rows=np.arange(source.n_samples),
            labels=labels,
            x=x,
            x_changed=mask,
            loader_options=options,
        )
    assert digests(dst.parent) == before
    assert sorted(p.name for p in dst.parent.iterdir()) == ([dst.name] if existing else [])
    assert digests(source.path) == source_before


@pytest.mark.parametrize("kind", ["hdf5-nhw", "images"])
def test_existing_destination_is_replaced(kind, tmp_path):
    source, options = build(kind, tmp_path)
    dst = out_path(tmp_path, source)
    dst.parent.mkdir()
    if source.format == "image-folder":
        (dst / "zebra").mkdir(parents=True)
        (dst / "zebra" / "z.png").write_bytes(b"old")
    else:
        dst.write_text("old")
    rows = np.arange(source.n_samples)
    checked_write(source, dst, options, rows=rows, labels=source.labels)
    copy = reload(dst, options)
    assert copy.ids == source.ids
    assert sorted(p.name for p in dst.parent.iterdir()) == [dst.name]


def test_destination_overlapping_the_source_is_refused(tmp_path):
    source, options = build("images", tmp_path)
    rows = np.arange(source.n_samples)
    for dst in (source.path, source.path / "cat" / "copy", source.path.parent):
        with pytest.raises(OutputError, match="source dataset"):
            write_like(source, dst, rows=rows, labels=source.labels, loader_options=options)
    csv_source, csv_options = build("csv-plain", tmp_path)
    with pytest.raises(OutputError, match="source dataset"):
        write_like(csv_source, csv_source.path, rows=np.arange(N), labels=csv_source.labels)
    assert sorted(p.name for p in source.path.parent.iterdir()) == ["pets", "plain.csv"]


def test_source_changed_since_loading_is_a_dataset_error(tmp_path):
    source, options = build("hdf5-nhw", tmp_path)
    with h5py.File(source.path, "r+") as f:
        f["y"][0] = 9
    dst = out_path(tmp_path, source)
    with pytest.raises(DatasetError, match="changed since it was loaded"):
        write_like(source, dst, rows=np.arange(N), labels=source.labels, loader_options=options)
    assert list(dst.parent.iterdir()) == []


def test_npz_per_sample_pickled_array_is_refused_for_a_subset(tmp_path):
    path = tmp_path / "src" / "objects.npz"
    path.parent.mkdir()
    notes = np.empty(N, dtype=object)
    notes[:] = [{"row": i} for i in range(N)]
    np.savez(path, x=np.zeros((N, 2)), y=np.arange(N) % 2, notes=notes)
    source = load_dataset(path)
    dst = tmp_path / "out" / "objects.npz"
    checked_write(source, dst, {}, rows=np.arange(N), labels=source.labels)  # copied as is
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(dst) as new:
        assert new.read("notes.npy") == old.read("notes.npy")
    with pytest.raises(DatasetError, match="pickled"):
        write_like(source, dst, rows=np.arange(3), labels=source.labels[:3])
    assert sorted(p.name for p in dst.parent.iterdir()) == ["objects.npz"]


def test_bad_arguments_are_value_errors(tmp_path):
    source, options = build("npz", tmp_path)
    dst = out_path(tmp_path, source)
    cases = [
        {"rows": np.array([0, 0]), "labels": np.array([0, 0])},
        {"rows": np.array([0, N]), "labels": np.array([0, 0])},
        {"rows": np.array([0, 1]), "labels": np.array([0])},
        {"rows": np.array([0, 1]), "labels": np.array([0, 3])},
        {"rows": np.array([0, 1]), "labels": np.array([0, 1]), "x": source.x[:1]},
        {"rows": np.array([0, 1]), "labels": np.array([0, 1]), "x_changed": np.ones(2, bool)},
    ]
    for case in cases:
        with pytest.raises(ValueError):
            write_like(source, dst, loader_options=options, **case)
    assert not dst.parent.exists() or list(dst.parent.iterdir()) == []


def test_unknown_format_is_a_value_error(tmp_path):
    source, _ = build("npz", tmp_path)
    source.format = "feather"
    with pytest.raises(ValueError, match="csv, hdf5, image-folder, npz"):
        write_like(source, tmp_path / "o.feather", rows=np.arange(N), labels=source.labels)


# --- prepare_output_dir ----------------------------------------------------------------------


def test_prepare_output_dir_creates_and_resolves(tmp_path):
    source = tmp_path / "data" / "train.h5"
    source.parent.mkdir()
    source.write_bytes(b"")
    out = prepare_output_dir(source, tmp_path / "a" / "b" / ".." / "c")
    assert out == (tmp_path / "a" / "c").resolve() and out.is_dir()
    assert prepare_output_dir(source, out) == out  # an existing folder is fine


@pytest.mark.parametrize("case", ["same", "inside", "contains", "file", "link"])
def test_prepare_output_dir_refuses_unsafe_folders(case, tmp_path):
    source = tmp_path / "data" / "images"
    (source / "cat").mkdir(parents=True)
    outs = {
        "same": source,
        "inside": source / "cat" / "out",
        "contains": tmp_path / "data",
        "file": tmp_path / "report.txt",
        "link": tmp_path / "alias",
    }
    (tmp_path / "report.txt").write_text("x")
    (tmp_path / "alias").symlink_to(source)
    out = outs[case]
    with pytest.raises(PoisonGuardError) as info:
        prepare_output_dir(source, out)
    assert isinstance(info.value, OutputError)
    message = str(info.value)
    assert str(out) in message and str(source) in message
    assert not (source / "cat" / "out").exists()
