"""Tests of the dataset loaders: every format, every layout and every documented bad input."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from poisonguard.errors import DatasetError
from poisonguard.loaders import FORMATS, detect_format, load_dataset
from poisonguard.loaders.array_layout import copy_chunked, plan_layout

RNG = np.random.default_rng(0)


# --- helpers ---------------------------------------------------------------------------------


def save_image(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def gray(h: int = 8, w: int = 8, value: int | None = None) -> np.ndarray:
    if value is not None:
        return np.full((h, w), value, dtype=np.uint8)
    return RNG.integers(0, 256, size=(h, w), dtype=np.uint8)


def rgb(h: int = 8, w: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def make_folder(root: Path, classes: dict[str, int], *, h: int = 8, w: int = 8) -> Path:
    """``classes`` maps class folder name -> number of grayscale PNGs."""
    for name, count in classes.items():
        for i in range(count):
            save_image(root / name / f"img_{i:04d}.png", gray(h, w))
    return root


def write_h5(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# --- load_dataset / detect_format ------------------------------------------------------------


def test_formats_registry_names():
    assert set(FORMATS) == {
        "image-folder",
        "hdf5",
        "npz",
        "csv",
        "tsv",
        "jsonl",
        "parquet",
        "text-folder",
    }
    assert all(callable(f) for f in FORMATS.values())


def test_detect_format(tmp_path):
    assert detect_format(tmp_path) == "image-folder"
    assert detect_format(tmp_path / "a.h5") == "hdf5"
    assert detect_format(tmp_path / "a.HDF5") == "hdf5"
    assert detect_format(tmp_path / "a.hdf") == "hdf5"
    assert detect_format(tmp_path / "a.npz") == "npz"
    assert detect_format(tmp_path / "a.CSV") == "csv"
    with pytest.raises(DatasetError) as excinfo:
        detect_format(tmp_path / "data.feather")
    text = message(excinfo)
    assert "data.feather" in text and "--format" in text
    for name in FORMATS:
        assert name in text


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "nope.npz")
    assert "nope.npz" in message(excinfo) and "does not exist" in message(excinfo)


def test_unknown_format_name(tmp_path):
    with pytest.raises(ValueError) as excinfo:
        load_dataset(tmp_path, format="feather")
    assert "feather" in message(excinfo)
    for name in FORMATS:
        assert name in message(excinfo)


def test_format_override_reads_other_extension(tmp_path):
    path = write_csv(tmp_path / "table.txt", "a,label\n1,x\n2,y\n")
    with pytest.raises(DatasetError):
        load_dataset(path)
    ds = load_dataset(path, format="csv")
    assert ds.format == "csv" and ds.x.shape == (2, 1)


def test_option_for_other_format_is_ignored_with_warning(tmp_path, caplog):
    path = write_csv(tmp_path / "t.csv", "a,label\n1,x\n2,y\n")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(path, x_key="images")
    assert ds.n_samples == 2
    assert "x_key" in caplog.text


# --- image folder ----------------------------------------------------------------------------


def test_image_folder_loads_in_order(tmp_path):
    root = make_folder(tmp_path / "data", {"1": 2, "0": 3, "10": 1, "2": 1})
    (root / "README.md").write_text("ignored")
    (root / "ground_truth.csv").write_text("id,poisoned\n")
    (root / ".hidden").mkdir()
    (root / "0" / ".DS_Store").write_bytes(b"junk")
    ds = load_dataset(root)
    assert ds.kind == "image" and ds.format == "image-folder"
    assert ds.path == root
    assert ds.x.shape == (7, 1, 8, 8) and ds.x.dtype == np.uint8
    assert ds.class_names == ["0", "1", "2", "10"]  # numeric folder names sort numerically
    assert ds.ids == [
        "0/img_0000.png",
        "0/img_0001.png",
        "0/img_0002.png",
        "1/img_0000.png",
        "1/img_0001.png",
        "2/img_0000.png",
        "10/img_0000.png",
    ]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2, 3]
    assert ds.notes == [] and ds.skipped == []
    # Pixels land in the right row.
    with Image.open(root / "1" / "img_0001.png") as image:
        expected = np.asarray(image)
    np.testing.assert_array_equal(ds.x[4, 0], expected)


def test_image_folder_string_classes_and_extensions(tmp_path):
    root = tmp_path / "pets"
    save_image(root / "dog" / "b.JPG", rgb(), quality=95)
    save_image(root / "dog" / "a.png", rgb())
    save_image(root / "cat" / "c.bmp", rgb())
    save_image(root / "cat" / "d.gif", gray())
    save_image(root / "cat" / "e.jpeg", rgb())
    (root / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset(root)
    assert ds.class_names == ["cat", "dog"]
    assert ds.ids == ["cat/c.bmp", "cat/d.gif", "cat/e.jpeg", "dog/a.png", "dog/b.JPG"]
    assert ds.x.shape == (5, 3, 8, 8)
    assert any("notes.txt" in note for note in ds.notes)


def test_image_folder_gray_and_rgb_mix_is_rgb(tmp_path):
    root = tmp_path / "mix"
    g = gray(value=77)
    save_image(root / "a" / "g.png", g)
    colour = rgb()
    save_image(root / "a" / "c.png", colour)
    save_image(root / "b" / "rgba.png", np.dstack([colour, np.full((8, 8), 128, np.uint8)]))
    palette = Image.fromarray(colour).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(root / "b" / "p.png")
    ds = load_dataset(root)
    assert ds.x.shape == (4, 3, 8, 8)
    assert ds.ids == ["a/c.png", "a/g.png", "b/p.png", "b/rgba.png"]
    np.testing.assert_array_equal(ds.x[0], colour.transpose(2, 0, 1))
    assert (ds.x[1] == 77).all()  # gray replicated into 3 channels
    np.testing.assert_array_equal(ds.x[3], colour.transpose(2, 0, 1))  # alpha dropped
    assert any("grayscale" in note and "RGB" in note for note in ds.notes)


def test_image_folder_grayscale_modes_stay_one_channel(tmp_path):
    root = tmp_path / "gray"
    save_image(root / "a" / "l.png", gray())
    Image.fromarray(gray() > 128).save(root / "a" / "bw.png")  # mode "1"
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    save_image(root / "b" / "deep.png", deep)  # 16-bit grayscale
    la = Image.fromarray(np.dstack([gray(value=9), gray(value=200)]), mode="LA")
    la.save(root / "b" / "la.png")
    ds = load_dataset(root)
    assert ds.x.shape == (4, 1, 8, 8)
    assert set(np.unique(ds.x[0])) <= {0, 255}
    np.testing.assert_array_equal(ds.x[2, 0], np.rint(deep / 257).astype(np.uint8))
    assert (ds.x[3] == 9).all()
    assert any("16-bit" in note for note in ds.notes)


def test_image_folder_mixed_sizes_resized_with_note(tmp_path):
    root = tmp_path / "sizes"
    for i in range(3):
        save_image(root / "a" / f"{i}.png", gray(10, 12))
    save_image(root / "a" / "big.png", gray(20, 20))
    save_image(root / "b" / "0.png", gray(10, 12))
    save_image(root / "b" / "small.png", gray(5, 7))
    ds = load_dataset(root)
    assert ds.x.shape == (6, 1, 10, 12)  # the most common size (H x W)
    assert any("3 different sizes" in n and "10x12" in n for n in ds.notes), ds.notes


def test_image_folder_downscaled_to_max_side(tmp_path):
    root = tmp_path / "large"
    for cls in ("a", "b"):
        save_image(root / cls / "0.png", gray(40, 80))
    ds = load_dataset(root, max_image_side=20)
    assert ds.x.shape == (2, 1, 10, 20)  # aspect ratio kept
    assert any("downscaled" in n and "40x80" in n and "10x20" in n for n in ds.notes)


def test_image_folder_gif_first_frame(tmp_path):
    root = tmp_path / "gif"
    frames = [Image.fromarray(gray(value=v)) for v in (10, 200)]
    (root / "a").mkdir(parents=True)
    frames[0].save(root / "a" / "anim.gif", save_all=True, append_images=frames[1:])
    save_image(root / "b" / "x.gif", gray(value=50))
    ds = load_dataset(root)
    assert ds.x.shape[0] == 2
    assert int(np.median(ds.x[0])) == 10


def test_empty_folder(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root)
    assert "empty" in message(excinfo) and "no class folders" in message(excinfo)


def test_images_not_in_class_folders(tmp_path):
    root = tmp_path / "flat"
    save_image(root / "a.png", gray())
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root)
    assert "no class folders" in message(excinfo) and "1 image" in message(excinfo)


def test_class_folder_without_images(tmp_path):
    root = make_folder(tmp_path / "data", {"cat": 2})
    (root / "dog").mkdir()
    (root / "dog" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root)
    assert "'dog'" in message(excinfo) and "no images" in message(excinfo)


def test_folder_with_one_class(tmp_path):
    root = make_folder(tmp_path / "data", {"cat": 3})
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root)
    assert "data" in message(excinfo) and "at least 2 classes" in message(excinfo)


def _truncated_png(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(rgb(32, 32)).save(buffer, format="PNG")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("kind", ["corrupt", "truncated"])
def test_bad_image_names_the_file(tmp_path, kind):
    root = make_folder(tmp_path / "data", {"a": 2, "b": 2})
    if kind == "corrupt":
        (root / "b" / "bad.png").write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    else:
        _truncated_png(root / "b" / "bad.png")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root)
    text = message(excinfo)
    assert "bad.png" in text and "not a readable image" in text and "--skip-bad" in text


def test_skip_bad_lists_skipped_images(tmp_path):
    root = make_folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "a" / "corrupt.png").write_bytes(b"\x89PNG not really")
    _truncated_png(root / "b" / "truncated.png")
    ds = load_dataset(root, skip_bad=True)
    assert ds.n_samples == 4
    assert "a/corrupt.png" not in ds.ids and "b/truncated.png" not in ds.ids
    assert [rel for rel, _ in ds.skipped] == ["a/corrupt.png", "b/truncated.png"]
    assert all("not a readable image" in reason for _, reason in ds.skipped)
    assert any("skipped 2" in note for note in ds.notes)
    assert ds.labels.tolist() == [0, 0, 1, 1]
    # The truncated image was a 32x32 RGB one: once it is left out, nothing is resized or RGB.
    assert ds.x.shape == (4, 1, 8, 8)
    assert not any("sizes" in note or "RGB" in note for note in ds.notes), ds.notes


def test_skip_bad_all_images_of_a_class_bad(tmp_path):
    root = make_folder(tmp_path / "data", {"a": 2})
    (root / "b").mkdir()
    _truncated_png(root / "b" / "1.png")
    (root / "b" / "2.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root, skip_bad=True)
    assert "'b'" in message(excinfo) and "could be read" in message(excinfo)


def test_decompression_bomb_is_a_bad_image(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data", {"a": 2, "b": 2})
    save_image(root / "b" / "bomb.png", gray(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 8x8 fine, 40x40 warns
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(root)
    assert "bomb.png" in message(excinfo) and "decompression bomb" in message(excinfo)
    ds = load_dataset(root, skip_bad=True)
    assert ds.skipped[0][0] == "b/bomb.png"


def test_image_folder_given_a_file(tmp_path):
    path = write_csv(tmp_path / "x.csv", "a,label\n")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path, format="image-folder")
    assert "x.csv" in message(excinfo) and "not a folder" in message(excinfo)


# --- HDF5 ------------------------------------------------------------------------------------


def test_hdf5_layouts(tmp_path):
    nchw = RNG.integers(0, 256, size=(5, 3, 6, 7), dtype=np.uint8)
    y = np.array([0, 1, 0, 1, 2])
    cases = {
        "nhwc": nchw.transpose(0, 2, 3, 1),
        "nchw": nchw,
    }
    for name, x in cases.items():
        ds = load_dataset(write_h5(tmp_path / f"{name}.h5", x=x, y=y))
        assert ds.kind == "image" and ds.format == "hdf5"
        assert ds.x.dtype == np.uint8
        np.testing.assert_array_equal(ds.x, nchw)
        assert ds.ids == ["0", "1", "2", "3", "4"]
        assert ds.class_names == ["0", "1", "2"] and ds.labels.tolist() == y.tolist()

    nhw = RNG.random((4, 6, 5)).astype(np.float64)
    ds = load_dataset(write_h5(tmp_path / "nhw.h5", x=nhw, y=np.array([1, 2, 1, 2])))
    assert ds.x.shape == (4, 1, 6, 5) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x[:, 0], nhw, rtol=1e-6)

    table = RNG.normal(size=(6, 4))
    ds = load_dataset(write_h5(tmp_path / "t.hdf5", x=table, y=np.array([0, 1] * 3)))
    assert ds.kind == "table" and ds.x.shape == (6, 4) and ds.x.dtype == np.float32


def test_hdf5_ambiguous_layout_and_alpha_notes(tmp_path):
    x = RNG.integers(0, 256, size=(4, 3, 5, 3), dtype=np.uint8)
    ds = load_dataset(write_h5(tmp_path / "amb.h5", x=x, y=np.array([0, 1, 0, 1])))
    assert ds.x.shape == (4, 3, 3, 5)  # read as channels-last
    assert any("layout guessed" in n for n in ds.notes)

    rgba = RNG.integers(0, 256, size=(4, 6, 6, 4), dtype=np.uint8)
    ds = load_dataset(write_h5(tmp_path / "rgba.h5", x=rgba, y=np.array([0, 1, 0, 1])))
    np.testing.assert_array_equal(ds.x, rgba[..., :3].transpose(0, 3, 1, 2))
    assert any("alpha" in n for n in ds.notes)


def test_hdf5_fallback_keys_nested_string_labels_and_ids(tmp_path):
    path = tmp_path / "nested.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("train")
        group.create_dataset("images", data=RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8))
        group.create_dataset("labels", data=np.array([b"dog", b"cat", b"dog"]))
        f.create_dataset("ids", data=np.array(["s-a", "s-b", "s-c"], dtype=h5py.string_dtype()))
    ds = load_dataset(path)
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [1, 0, 1]
    assert ds.ids == ["s-a", "s-b", "s-c"]


def test_hdf5_key_override(tmp_path):
    path = write_h5(
        tmp_path / "k.h5",
        x=np.zeros((2, 3)),
        y=np.array([0, 1]),
        feats=RNG.normal(size=(4, 3)),
        target=np.array(["a", "b", "a", "b"], dtype="S1"),
    )
    ds = load_dataset(path, x_key="feats", y_key="/target")
    assert ds.x.shape == (4, 3) and ds.class_names == ["a", "b"]
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path, x_key="missing")
    text = message(excinfo)
    assert "'missing'" in text and "--x-key" in text and "'feats'" in text


def test_hdf5_integer_images_outside_uint8_become_float(tmp_path):
    x = np.arange(4 * 16, dtype=np.int32).reshape(4, 4, 4) * 10
    ds = load_dataset(write_h5(tmp_path / "int.h5", x=x, y=np.array([0, 1, 0, 1])))
    assert ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x[:, 0], x)
    x_small = np.arange(4 * 16, dtype=np.int64).reshape(4, 4, 4)
    ds = load_dataset(write_h5(tmp_path / "int8.h5", x=x_small, y=np.array([0, 1, 0, 1])))
    assert ds.x.dtype == np.uint8


def test_hdf5_missing_keys_lists_what_it_has(tmp_path):
    with h5py.File(tmp_path / "keys.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((2, 2)))
        f.create_dataset("group/target", data=np.zeros(2))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "keys.h5")
    text = message(excinfo)
    assert "keys.h5" in text and "'x'" in text and "'images'" in text
    assert "'data'" in text and "'group/target'" in text and "--x-key" in text


def test_hdf5_length_mismatch(tmp_path):
    path = write_h5(tmp_path / "len.h5", x=np.zeros((5, 3)), y=np.array([0, 1, 0]))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path)
    assert "len.h5" in message(excinfo) and "x has 5 rows but y has 3" in message(excinfo)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_hdf5_nan_inf(tmp_path, bad):
    x = RNG.normal(size=(10, 2, 2)).astype(np.float32)
    x[7, 1, 0] = bad
    path = write_h5(tmp_path / "nan.h5", x=x, y=np.arange(10) % 2)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path)
    assert "nan.h5" in message(excinfo) and "sample 7" in message(excinfo)


def test_hdf5_bad_inputs(tmp_path):
    not_h5 = tmp_path / "fake.h5"
    not_h5.write_bytes(b"this is not an HDF5 file at all")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(not_h5)
    assert "fake.h5" in message(excinfo) and "not a readable HDF5 file" in message(excinfo)

    cases = {
        "empty.h5": ({"x": np.zeros((0, 3)), "y": np.zeros(0)}, "no samples"),
        "fivedim.h5": ({"x": np.zeros((2, 1, 1, 1, 1)), "y": np.array([0, 1])}, "accepted"),
        "chan.h5": ({"x": np.zeros((2, 5, 6, 7)), "y": np.array([0, 1])}, "channel"),
        "text.h5": ({"x": np.array([[b"a"], [b"b"]]), "y": np.array([0, 1])}, "real numbers"),
        "one.h5": ({"x": np.zeros((3, 2)), "y": np.array([4, 4, 4])}, "at least 2 classes"),
        "dupid.h5": (
            {"x": np.zeros((2, 2)), "y": np.array([0, 1]), "ids": np.array([7, 7])},
            "twice",
        ),
    }
    for name, (arrays, expected) in cases.items():
        with pytest.raises(DatasetError) as excinfo:
            load_dataset(write_h5(tmp_path / name, **arrays))
        assert name in message(excinfo) and expected in message(excinfo), message(excinfo)


# --- NPZ -------------------------------------------------------------------------------------


def test_npz_loads_images_and_tables(tmp_path):
    x = RNG.integers(0, 256, size=(6, 5, 5, 1), dtype=np.uint8)
    ids = np.array([f"img{i}" for i in range(6)])
    np.savez(tmp_path / "a.npz", x=x, y=np.array(["b", "a"] * 3), ids=ids)
    ds = load_dataset(tmp_path / "a.npz")
    assert ds.format == "npz" and ds.kind == "image"
    assert ds.x.shape == (6, 1, 5, 5) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.x[:, 0], x[..., 0])
    assert ds.class_names == ["a", "b"] and ds.labels.tolist() == [1, 0] * 3
    assert ds.ids == ids.tolist()

    np.savez_compressed(
        tmp_path / "b.npz", images=RNG.normal(size=(4, 3)), labels=np.array([0, 1, 1, 0])
    )
    ds = load_dataset(tmp_path / "b.npz")
    assert ds.kind == "table" and ds.x.dtype == np.float32 and ds.x.shape == (4, 3)


def test_npz_key_override_and_missing_keys(tmp_path):
    np.savez(tmp_path / "k.npz", feats=np.zeros((2, 3)), target=np.array([0, 1]))
    ds = load_dataset(tmp_path / "k.npz", x_key="feats", y_key="target")
    assert ds.x.shape == (2, 3)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "k.npz")
    text = message(excinfo)
    assert "k.npz" in text and "'feats'" in text and "'target'" in text and "--x-key" in text
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "k.npz", x_key="feats")
    assert "'y'" in message(excinfo) and "'labels'" in message(excinfo)


def test_npz_length_mismatch(tmp_path):
    np.savez(tmp_path / "len.npz", x=np.zeros((4, 2)), y=np.array([0, 1]))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "len.npz")
    assert "len.npz" in message(excinfo) and "x has 4 rows but y has 2" in message(excinfo)


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_npz_nan_inf(tmp_path, bad):
    x = np.ones((6, 3), dtype=np.float64)
    x[4, 2] = bad
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(6) % 2)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "nan.npz")
    assert "nan.npz" in message(excinfo) and "sample 4" in message(excinfo)


class _Boom:
    def __reduce__(self):  # would run code if ever unpickled
        return (pytest.fail, ("the loader unpickled an object array",))


def test_npz_object_array_is_refused(tmp_path):
    x = np.empty(2, dtype=object)
    x[0], x[1] = _Boom(), _Boom()
    np.savez(tmp_path / "obj.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "obj.npz")
    assert "obj.npz" in message(excinfo) and "pickled" in message(excinfo)
    assert "refused" in message(excinfo)


def test_npz_not_an_archive(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "text.npz")
    assert "text.npz" in message(excinfo) and "not an .npz archive" in message(excinfo)

    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "single.npz")
    assert "single .npy array" in message(excinfo)

    np.savez(tmp_path / "cut.npz", x=np.zeros((50, 50)), y=np.zeros(50))
    data = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "cut.npz")
    assert "cut.npz" in message(excinfo)


def test_npz_non_array_member(tmp_path):
    with zipfile.ZipFile(tmp_path / "odd.npz", "w") as archive:
        archive.writestr("x.txt", "hello")
        archive.writestr("y.txt", "hello")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(tmp_path / "odd.npz", x_key="x.txt", y_key="y.txt")
    assert "odd.npz" in message(excinfo)


# --- chunked copy ----------------------------------------------------------------------------


def test_copy_chunked_reports_offset_and_widens(tmp_path):
    x = np.zeros((10, 4, 4, 3), dtype=np.float64)
    x[8, 0, 0, 0] = np.nan
    layout = plan_layout(x.shape, path="p")
    with pytest.raises(DatasetError) as excinfo:
        copy_chunked(x, layout, path="p", chunk_samples=3)
    assert "sample 8" in message(excinfo)

    ints = np.zeros((10, 2, 2), dtype=np.int16)
    ints[9] = 300  # only the last chunk leaves 0..255
    ints[0] = 7
    out, notes = copy_chunked(ints, plan_layout(ints.shape, path="p"), path="p", chunk_samples=4)
    assert out.dtype == np.float32 and out[0, 0, 0, 0] == 7 and out[9, 0, 0, 0] == 300
    assert notes and "0..255" in notes[0]

    nhwc = RNG.integers(0, 256, size=(9, 2, 3, 3), dtype=np.uint8)
    out, _ = copy_chunked(nhwc, plan_layout(nhwc.shape, path="p"), path="p", chunk_samples=2)
    np.testing.assert_array_equal(out, nhwc.transpose(0, 3, 1, 2))


# --- CSV -------------------------------------------------------------------------------------


def test_csv_loads(tmp_path):
    path = write_csv(
        tmp_path / "t.csv",
        "id,height,label,weight\ns1,1.5,cat,10\ns2, 2.5 ,dog,-3e2\n\ns3,0,cat,7\n",
        encoding="utf-8-sig",  # with a BOM
    )
    ds = load_dataset(path)
    assert ds.kind == "table" and ds.format == "csv" and ds.path == path
    assert ds.x.dtype == np.float32 and ds.x.shape == (3, 2)
    np.testing.assert_allclose(ds.x, [[1.5, 10], [2.5, -300], [0, 7]])
    assert ds.feature_names == ["height", "weight"]
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 1, 0]
    assert ds.ids == ["s1", "s2", "s3"]


def test_csv_label_and_id_columns(tmp_path):
    path = write_csv(tmp_path / "t.csv", "name,a,b,klass\nx,1,2,10\ny,3,4,2\nz,5,6,2\n")
    ds = load_dataset(path, label_column="klass", id_column="name")
    assert ds.class_names == ["2", "10"] and ds.labels.tolist() == [1, 0, 0]
    assert ds.ids == ["x", "y", "z"] and ds.feature_names == ["a", "b"]

    plain = write_csv(tmp_path / "p.csv", "a,label\n1,0\n2,1\n")
    assert load_dataset(plain).ids == ["0", "1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["is empty"]),
        ("a,b,label\n", ["no data rows"]),
        (
            "a,b,target\n1,2,0\n",
            ["no label column 'label'", "'a', 'b', 'target'", "--label-column"],
        ),
        ("a,b,label\n1,2,0\n3,oops,1\n", ["line 3", "column 'b'", "'oops'", "not a number"]),
        ("a,b,label\n1,2,0\n3,,1\n", ["line 3", "column 'b'", "missing value"]),
        ("a,b,label\n1,nan,0\n3,4,1\n", ["line 2", "column 'b'", "'nan'", "NaN and inf"]),
        ("a,b,label\n1,2,0\n-inf,4,1\n", ["line 3", "column 'a'", "'-inf'"]),
        ("a,b,label\n1,2,0\n3,4\n", ["line 3", "2 fields", "header has 3"]),
        ("a,b,label\n1,2,0\n3,4,1,5\n", ["line 3", "4 fields"]),
        ("id,label\nq,0\nr,1\n", ["no feature columns"]),
        ("a,a,label\n1,2,0\n", ["'a' appears twice"]),
        ("a,b,label\n1,2,x\n3,4,x\n", ["found 1 class", "at least 2 classes"]),
        ("a,label\n1,0\n2,\n", ["line 3", "empty label"]),
        ("id,a,label\nk,1,0\nk,2,1\n", ["line 3", "'k'", "already used on line 2"]),
        ("a,label\n1e39,0\n2,1\n", ["line 2", "too large for float32"]),
    ],
)
def test_csv_errors(tmp_path, text, expected):
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path)
    text = message(excinfo)
    assert "bad.csv" in text
    for part in expected:
        assert part in text, text


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("a,label\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(path)
    assert "latin.csv" in message(excinfo) and "UTF-8" in message(excinfo)
