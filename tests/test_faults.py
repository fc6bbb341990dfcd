"""Environment faults (issue 14, item 5): a full disk, an unwritable output, cache or staging
folder, a killed run, an untrusted cache folder.

Every fault ends in one line (``Error: <path>: <problem>``), exit code 1, no traceback, no
half-written output and the previous output intact. Outputs are fsynced before they are renamed
into place, and the report folder is swapped so that the old report is never lost.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pathlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import assert_clean_failure
from conftest import run_cli as run

from poisonguard import atomic
from poisonguard.embed import cache as cache_module

EPOCHS = "2"
FILES = ("scores.csv", "report.json", "report.html")
ROOT = os.name == "posix" and os.geteuid() == 0


def checksums(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def leftovers(folder: Path) -> list[str]:
    """Temporary entries (``.<name>.<random>.tmp`` / ``.old``) left beside the outputs."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill(folder: Path, text: str) -> None:
    for name in FILES:
        (folder / name).write_text(f"{name} {text}")


@pytest.fixture
def old_report(tmp_path) -> Path:
    out = tmp_path / "report"
    out.mkdir()
    fill(out, "old")
    return out


# --- the report folder swap ----------------------------------------------------------------------


def test_failed_second_rename_puts_the_old_report_back(old_report, monkeypatch):
    before = checksums(old_report)
    monkeypatch.setattr(atomic, "_exchange", lambda first, second: False)  # the fallback path
    real_replace = os.replace
    calls = []

    def failing_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_second)
    with pytest.raises(OSError), atomic.atomic_directory(old_report, replaceable=FILES) as tmp:
        fill(tmp, "new")
    assert len(calls) >= 2
    assert checksums(old_report) == before
    assert leftovers(old_report.parent) == []


@pytest.mark.skipif(atomic._renameat2() is None, reason="renameat2 is Linux only")
def test_swap_is_one_exchange_with_no_moment_without_a_report(old_report, monkeypatch):
    seen = []
    real_exchange = atomic._exchange

    def exchange(first, second):
        done = real_exchange(first, second)
        seen.append((done, (second / "report.json").read_text()))
        return done

    def no_rename(src, dst):  # a two-rename swap would leave a moment without a report
        raise AssertionError(f"rename {src} -> {dst}")

    monkeypatch.setattr(atomic, "_exchange", exchange)
    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with atomic.atomic_directory(old_report, replaceable=FILES) as tmp:
        (tmp / "report.json").write_text("new")
    if not seen[0][0]:
        pytest.skip("this file system does not support RENAME_EXCHANGE")
    assert seen == [(True, "new")]
    assert sorted(os.listdir(old_report)) == ["report.json"]  # the old folder is gone
    assert leftovers(old_report.parent) == []


def test_everything_is_fsynced_before_the_swap(old_report, monkeypatch):
    events = []
    real_fsync, real_replace, real_exchange = os.fsync, os.replace, atomic._exchange

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(
        atomic.os, "replace", lambda a, b: (events.append(("rename", str(b))), real_replace(a, b))
    )
    monkeypatch.setattr(
        atomic,
        "_exchange",
        lambda a, b: (events.append(("rename", str(b))), real_exchange(a, b))[1],
    )
    with atomic.atomic_directory(old_report, replaceable=(*FILES, "sub")) as tmp:
        (tmp / "scores.csv").write_text("new")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "part.bin").write_bytes(b"x")
    first_rename = next(i for i, (kind, _) in enumerate(events) if kind == "rename")
    synced = {Path(path).name for kind, path in events[:first_rename] if kind == "fsync"}
    assert {"scores.csv", "part.bin", "sub"} <= synced
    assert any(name.endswith(".tmp") for name in synced)  # the folder itself
    assert ("fsync", str(old_report.parent)) in events[first_rename:]  # the rename is durable

    events.clear()
    with atomic.atomic_path(old_report.parent / "one.txt") as part:
        part.write_text("x")
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "rename", "fsync"]
    assert (old_report.parent / "one.txt").read_text() == "x"


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError(errno.ENOSPC, "No space")])
def test_a_killed_or_failed_write_leaves_the_old_output(old_report, fault):
    before = checksums(old_report)
    with pytest.raises(type(fault) if isinstance(fault, BaseException) else fault):
        with atomic.atomic_directory(old_report, replaceable=FILES) as tmp:
            (tmp / "scores.csv").write_text("half")
            raise fault
    assert checksums(old_report) == before
    with pytest.raises(type(fault) if isinstance(fault, BaseException) else fault):
        with atomic.atomic_path(old_report / "scores.csv") as part:
            part.write_text("half")
            raise fault
    assert checksums(old_report) == before
    assert leftovers(old_report.parent) == [] and leftovers(old_report) == []


def test_an_os_error_without_a_name_gets_the_destination(tmp_path):
    destination = tmp_path / "out" / "x.csv"
    with pytest.raises(OSError) as raised, atomic.atomic_path(destination) as part:
        part.write_text("x")
        no_space()
    assert raised.value.filename == str(destination)
    assert atomic.describe_os_error(raised.value) == f"{destination}: No space left on device"
    assert not destination.parent.exists() or leftovers(destination.parent) == []


# --- the command line: full disk, read-only output, staging, copies ------------------------------


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 16)
    x = rng.normal(size=(48, 5)).astype(np.float32) + 3 * labels[:, None]
    path = tmp_path_factory.mktemp("fault-table") / "table.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = x
        handle["y"] = labels
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault-cache")


@pytest.fixture
def scanned(table, cache, tmp_path) -> Path:
    out = tmp_path / "scan"
    result = run("scan", table, "--epochs", EPOCHS, "--out", out, "--cache-dir", cache)
    assert result.exit_code in (0, 3), result.output
    return out


def test_disk_full_while_writing_the_report(table, cache, scanned, monkeypatch):
    before = checksums(scanned)
    monkeypatch.setattr(pathlib.Path, "write_bytes", no_space)
    result = run("scan", table, "--epochs", EPOCHS, "--out", scanned, "--cache-dir", cache)
    assert_clean_failure(result, str(scanned), "No space left on device")
    assert checksums(scanned) == before
    assert leftovers(scanned.parent) == []


def test_disk_full_while_fsyncing_the_report(table, cache, scanned, monkeypatch):
    before = checksums(scanned)
    monkeypatch.setattr(atomic.os, "fsync", no_space)
    result = run("scan", table, "--epochs", EPOCHS, "--out", scanned, "--cache-dir", cache)
    assert_clean_failure(result, "No space left on device")
    assert checksums(scanned) == before
    assert leftovers(scanned.parent) == []


def test_killed_scan_leaves_the_old_report(table, cache, scanned, monkeypatch):
    before = checksums(scanned)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("poisonguard.report.html_report.render_html", killed)
    result = run("scan", table, "--epochs", EPOCHS, "--out", scanned, "--cache-dir", cache)
    assert result.exit_code != 0
    assert checksums(scanned) == before
    assert leftovers(scanned.parent) == []


def test_unwritable_staging_area_is_one_line(table, tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("poisonguard.ondisk.tempfile.TemporaryDirectory", read_only)
    out = tmp_path / "scan"
    result = run(
        "scan", table, "--epochs", EPOCHS, "--out", out, "--cache-dir", tmp_path / "c",
        "--chunk-rows", "4096",
    )  # fmt: skip
    assert_clean_failure(result, str(tmp_path / "c"), "staging", "Read-only file system")
    assert not out.exists()


def test_disk_full_while_writing_a_copy(table, tmp_path, monkeypatch):
    out = tmp_path / "poisoned"
    result = run("poison", table, "--attack", "flip-random", "--rate", "0.2", "--out", out)
    assert result.exit_code == 0, result.output
    before = checksums(out)
    monkeypatch.setitem(__import__("poisonguard.writers").writers.WRITERS, "hdf5", no_space)
    result = run("poison", table, "--attack", "flip-random", "--rate", "0.3", "--out", out)
    assert_clean_failure(result, str(out), "No space left on device")
    assert checksums(out) == before
    assert leftovers(out) == [] and leftovers(out.parent) == []


def test_cache_that_is_a_file_is_one_line_out_of_core(table, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    out = tmp_path / "scan"
    result = run(
        "scan", table, "--epochs", EPOCHS, "--out", out, "--cache-dir", blocker / "cache",
        "--chunk-rows", "4096",
    )  # fmt: skip
    assert_clean_failure(result, str(blocker))
    assert not out.exists()


@pytest.mark.skipif(ROOT, reason="root ignores file permissions")
def test_read_only_output_folder(table, cache, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        result = run(
            "scan", table, "--epochs", EPOCHS, "--out", parent / "scan", "--cache-dir", cache
        )
        assert_clean_failure(result, str(parent), "Permission denied")
        assert os.listdir(parent) == []
        out = parent / "copy"
        result = run("poison", table, "--attack", "flip-random", "--rate", "0.2", "--out", out)
        assert_clean_failure(result, str(parent))
        assert os.listdir(parent) == []
    finally:
        parent.chmod(0o700)


@pytest.mark.skipif(ROOT, reason="root ignores file permissions")
def test_read_only_cache_folder_out_of_core(table, tmp_path):
    locked = tmp_path / "cache"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run(
            "scan", table, "--epochs", EPOCHS, "--out", tmp_path / "scan", "--cache-dir", locked,
            "--chunk-rows", "4096",
        )  # fmt: skip
        assert_clean_failure(result, str(locked))
        assert not (tmp_path / "scan").exists()
    finally:
        locked.chmod(0o700)


# --- cache folder trust --------------------------------------------------------------------------


def cached_file(cache: Path) -> tuple[Path, str]:
    path = next(cache.glob("*.h5"))
    return path, path.stem


@pytest.mark.parametrize("what", ["folder", "file", "owner", "link"])
def test_untrusted_cache_is_not_read(table, tmp_path, monkeypatch, what):
    cache = tmp_path / "cache"
    result = run("scan", table, "--epochs", EPOCHS, "--out", tmp_path / "a", "--cache-dir", cache)
    assert result.exit_code in (0, 3), result.output
    path, fingerprint = cached_file(cache)
    assert cache.stat().st_mode & 0o777 == 0o700 and path.stat().st_mode & 0o777 == 0o600
    assert cache_module.load_cached(cache, fingerprint, 48) is not None
    if what == "folder":
        cache.chmod(0o777)
    elif what == "file":
        path.chmod(0o666)
    elif what == "owner":
        monkeypatch.setattr(cache_module.os, "geteuid", lambda: os.stat(path).st_uid + 1)
    else:
        real = tmp_path / "elsewhere.h5"
        path.rename(real)
        path.symlink_to(real)
    warnings = []
    monkeypatch.setattr(
        cache_module.logger, "warning", lambda message, *args: warnings.append(message % args)
    )
    assert cache_module.load_cached(cache, fingerprint, 48) is None
    assert len(warnings) == 1 and "not reading the embedding cache" in warnings[0], warnings
    if what in ("folder", "owner"):
        with pytest.raises(cache_module.UntrustedCacheError, match="cache folder"):
            cache_module.trusted_cache_dir(cache)


def test_untrusted_cache_folder_in_a_scan(table, tmp_path):
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    # in memory the cache is optional: the scan recomputes and warns that it did not store
    result = run("scan", table, "--epochs", EPOCHS, "--out", tmp_path / "a", "--cache-dir", cache)
    assert result.exit_code in (0, 3), result.output
    assert "writable by other users" in result.output
    assert list(cache.glob("*.h5")) == []
    # out of core the cache is needed: one line, exit 1, no report
    out = tmp_path / "b"
    result = run(
        "scan",
        table,
        "--epochs",
        EPOCHS,
        "--out",
        out,
        "--cache-dir",
        cache,
        "--chunk-rows",
        "4096",
    )
    assert_clean_failure(result, str(cache), "writable by other users")
    assert not out.exists()
