"""Backend conformance: the same tests on ``LocalBackend`` and ``FsspecBackend(memory://)``; then what only
the local backend has (temp files, atomic rename) and how a root chooses its backend."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from editcollapse.warehouse.backends import FsspecBackend, LocalBackend, open_backend
from tests.warehouse_backends import BACKEND_KINDS, fresh_backend

KEY = "t/model=m/method=x/run=r/part-00000.parquet"


@pytest.fixture(params=BACKEND_KINDS)
def backend(request, tmp_path):
    with fresh_backend(request.param, tmp_path) as opened:
        yield opened


def test_write_replaces_and_reads_back(backend) -> None:
    assert backend.read(KEY) is None and not backend.exists(KEY)
    backend.write(KEY, b"first")
    backend.write(KEY, b"second")
    assert backend.read(KEY) == b"second" and backend.exists(KEY)
    with backend.open(KEY) as handle:
        assert handle.read() == b"second"
    assert backend.find("t", ".parquet") == [KEY]  # one file: no temp files left beside it


def test_create_is_exclusive(backend) -> None:
    assert backend.create(KEY, b"mine")
    assert not backend.create(KEY, b"theirs")
    assert backend.read(KEY) == b"mine"


def test_remove_if_unchanged_only_removes_what_was_seen(backend) -> None:
    backend.write(KEY, b"seen")
    assert not backend.remove_if_unchanged(KEY, b"something else")
    assert backend.read(KEY) == b"seen"  # changed meanwhile: left in place
    assert backend.remove_if_unchanged(KEY, b"seen")
    assert backend.read(KEY) is None
    assert not backend.remove_if_unchanged(KEY, b"seen")  # gone already
    assert not [key for key in backend.find("t", "") if "stale" in key]  # nothing set aside is left behind


def test_remove_of_a_missing_key_is_quiet(backend) -> None:
    backend.write(KEY, b"x")
    backend.remove(KEY)
    backend.remove(KEY)
    assert not backend.exists(KEY)


def test_find_lists_keys_at_any_depth_by_suffix(backend) -> None:
    assert backend.find("t", ".parquet") == []  # no folder yet
    for key in (KEY, "t/model=m/method=x/run=s/part-00001.parquet", "t/notes.txt", "u/part-00000.parquet"):
        backend.write(key, b"x")
    assert sorted(backend.find("t", ".parquet")) == [KEY, "t/model=m/method=x/run=s/part-00001.parquet"]


def test_locations_of_a_key(backend) -> None:
    url = backend.url(KEY)
    assert str(url).endswith(KEY) and str(backend.path(KEY)).endswith(KEY)
    assert backend.glob_url("t", "**/*.parquet").endswith("t/**/*.parquet")
    assert isinstance(url, Path) if isinstance(backend, LocalBackend) else url.startswith("memory://")
    assert open_backend(backend.location).location == backend.location


def test_modified_is_the_writers_clock_or_unknown(backend) -> None:
    backend.write(KEY, b"x")
    modified = backend.modified(KEY)
    assert modified is None if backend.is_url else abs(modified - time.time()) < 60


def test_local_temp_files_of_killed_writers_are_removed_when_old(tmp_path) -> None:
    backend = open_backend(tmp_path)
    backend.write(KEY, b"x")
    folder = backend.path("t/model=m/method=x/run=r")
    old, fresh = folder / ".part-00001.dead.parquet.tmp", folder / ".part-00002.live.parquet.tmp"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert backend.find("t", ".parquet") == [KEY]  # temp files are never found as parts
    assert backend.remove_temps("t/model=m/method=x/run=r", older_than_s=600) == 1
    assert sorted(p.name for p in folder.iterdir()) == [".part-00002.live.parquet.tmp", "part-00000.parquet"]
    assert backend.remove_temps("no/such/folder", older_than_s=0) == 0


def test_local_write_that_fails_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch) -> None:
    backend = open_backend(tmp_path)
    backend.write(KEY, b"old")

    def crash(source, target):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        backend.write(KEY, b"new")
    assert backend.read(KEY) == b"old"
    assert [p.name for p in backend.path(KEY).parent.iterdir()] == ["part-00000.parquet"]


def test_a_root_chooses_its_backend_once(tmp_path) -> None:
    assert isinstance(open_backend(tmp_path), LocalBackend)
    assert isinstance(open_backend(str(tmp_path)), LocalBackend)
    local_url = open_backend(f"file://{tmp_path}")  # file:// is a local directory, with its guarantees
    assert isinstance(local_url, LocalBackend) and local_url.root == tmp_path
    memory = open_backend(Path("memory://choose"))  # a URL that went through pathlib
    assert isinstance(memory, FsspecBackend) and memory.location == "memory:///choose"
    assert memory.protocol == "memory" and memory.local_dir.name.startswith("memory-")
