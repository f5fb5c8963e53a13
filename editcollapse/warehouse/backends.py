"""Storage under a warehouse root: a local (or shared, e.g. NFS) directory, or any fsspec URL.

:func:`open_backend` chooses the backend once from the root; everything above talks to the
:class:`Backend` interface with keys (``/``-separated paths relative to the root, see
:mod:`.layout`). ``file://`` URLs are local directories. How each backend makes a file appear
all at once, and creates one only if absent:

* :class:`LocalBackend`: a file is written to a hidden ``.<stem>.<random><suffix>.tmp`` beside
  its final name, fsynced, then ``os.replace``\\d into place (atomic rename). An exclusive create
  hard-links a temp file holding the content to the final name (``link`` fails if it exists), so
  a writer killed at any moment never leaves an empty file.
* :class:`FsspecBackend` (``s3://bucket/wh``, ``gs://…``, ``memory://wh`` …): a file is stored
  with one ``pipe_file`` call — one PUT (or one multipart upload, completed at once) of the whole
  object, which an object store makes visible all at once; there are no temp files. An exclusive
  create is fsspec's ``pipe_file(mode="create")``, a conditional write where the store has one
  (S3 ``If-None-Match``, GCS ``ifGenerationMatch=0``, ``memory://``); elsewhere fsspec checks
  then writes, and the content is read back so that only the last writer sees its own. A
  filesystem that is not an object store (``sftp://``, ``webdav://`` …) is not atomic: a reader
  may briefly see a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO

from editcollapse.core.paths import cache_dir

TEMP_SUFFIX = ".tmp"
LOCAL_PROTOCOLS = ("file", "local")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_MANGLED_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")  # pathlib made "memory://x" "memory:/x"


def is_url(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is an fsspec URL (``protocol://…``) rather than a local path."""
    return bool(_URL.match(os.fspath(root)))


def normalise_root(root: str | os.PathLike[str]) -> str:
    """``root`` as text; a URL that went through ``pathlib.Path`` (``s3:/bucket``) gets its ``//`` back."""
    text = os.fspath(root)
    mangled = _MANGLED_URL.match(text)
    if mangled and not _URL.match(text) and len(mangled.group(1)) > 1:
        text = f"{mangled.group(1)}://{text[mangled.end() :]}"
    return text


class Backend(ABC):
    """Files under one root, addressed by key. Writes are atomic; reads see other workers' writes."""

    is_url: bool
    """Whether the root is reached through fsspec: each check is then a round trip worth caching."""
    fs: Any
    """The fsspec filesystem (DuckDB and pyarrow read a URL root through it); None for a local root."""
    root: Path | str
    """A local root as a :class:`~pathlib.Path`, a URL root as its URL text."""
    protocol: str

    @property
    def location(self) -> str:
        """The text to hand to another process or machine: ``open_backend(location)`` opens the same root."""
        return str(self.root)

    @property
    @abstractmethod
    def local_dir(self) -> Path:
        """A folder of this machine for side files that are not tables (checkpoints, figures, exports)."""

    @abstractmethod
    def path(self, key: str) -> Path | str:
        """Where ``key`` lives in this backend's own terms: a Path, or an fsspec path (no protocol)."""

    @abstractmethod
    def url(self, key: str) -> Path | str:
        """Where ``key`` lives for a user: a Path, or the full URL."""

    @abstractmethod
    def glob_url(self, folder: str, pattern: str) -> str:
        """An absolute path or URL of ``pattern`` under ``folder``, for readers that expand globs (DuckDB)."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Make ``key`` hold ``data``, all at once, replacing what was there."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Make ``key`` hold ``data`` only if it does not exist; True when this call created it."""

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The bytes of ``key`` now (never a cached copy), or None when it does not exist."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """``key`` opened for reading; FileNotFoundError when it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` is a file now (never a cached answer)."""

    @abstractmethod
    def modified(self, key: str) -> float | None:
        """When ``key`` was last written (epoch seconds) where the storage keeps a time of the writer's
        clock that can be set (a local file's mtime; FileNotFoundError when it does not exist); None
        for object stores."""

    @abstractmethod
    def remove(self, key: str) -> None:
        """Delete ``key``; nothing happens when it does not exist."""

    @abstractmethod
    def remove_if_unchanged(self, key: str, data: bytes) -> bool:
        """Delete ``key`` if it still holds ``data``; True when this call deleted it."""

    @abstractmethod
    def move(self, key: str, target: str) -> None:
        """Move ``key`` to the key ``target`` (replacing it); FileNotFoundError when ``key`` does not exist."""

    @abstractmethod
    def is_folder(self, folder: str) -> bool:
        """Whether ``folder`` (a key) is a folder now."""

    @abstractmethod
    def find(self, folder: str, suffix: str) -> list[str]:
        """Keys of every file under ``folder`` (at any depth) whose name ends with ``suffix``."""

    @abstractmethod
    def remove_temps(self, folder: str, older_than_s: float) -> int:
        """Delete temp files that killed writers left directly in ``folder``, only ones older than
        ``older_than_s`` (a live writer is never disturbed); return how many."""


class LocalBackend(Backend):
    """A directory of this machine (or a shared filesystem mounted on it), through pathlib and os."""

    is_url = False
    fs = None
    protocol = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LocalBackend({self.location!r})"

    @property
    def local_dir(self) -> Path:
        return self.root

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/")) if key else self.root

    def url(self, key: str) -> Path:
        return self.path(key)

    def glob_url(self, folder: str, pattern: str) -> str:
        return str(self.path(folder).resolve() / pattern)

    def write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}{path.suffix}{TEMP_SUFFIX}")
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    def create(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
        temp.write_bytes(data)
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        finally:
            temp.unlink()

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def modified(self, key: str) -> float:
        return self.path(key).stat().st_mtime

    def remove(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def remove_if_unchanged(self, key: str, data: bytes) -> bool:
        """Renamed aside first (only one remover wins the rename), then compared: a file that
        changed meanwhile is put back, unless a new one took its name already."""
        path = self.path(key)
        taken = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:12]}")
        try:
            os.rename(path, taken)
        except FileNotFoundError:
            return False
        try:
            if taken.read_bytes() == data:
                return True
            with contextlib.suppress(FileExistsError):
                os.link(taken, path)
            return False
        finally:
            taken.unlink()

    def move(self, key: str, target: str) -> None:
        destination = self.path(target)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(key), destination)

    def is_folder(self, folder: str) -> bool:
        return self.path(folder).is_dir()

    def find(self, folder: str, suffix: str) -> list[str]:
        base = self.path(folder)
        if not base.is_dir():
            return []
        return ["/".join(p.relative_to(self.root).parts) for p in base.rglob(f"*{suffix}")]

    def remove_temps(self, folder: str, older_than_s: float) -> int:
        base = self.path(folder)
        if not base.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - older_than_s
        for temp in base.glob(f".*{TEMP_SUFFIX}"):
            if temp.stat().st_mtime < cutoff:
                temp.unlink(missing_ok=True)
                removed += 1
        return removed


class FsspecBackend(Backend):
    """Any fsspec filesystem (an object store above all) below the fsspec path ``base``."""

    is_url = True

    def __init__(self, fs: Any, base: str) -> None:
        self.fs = fs
        self.base = base.rstrip("/") or "/"
        self.protocol = _protocols(fs)[0]
        self.root = fs.unstrip_protocol(self.base)

    def __repr__(self) -> str:
        return f"FsspecBackend({self.location!r})"

    @property
    def local_dir(self) -> Path:
        """``<cache>/warehouse-local/<protocol>-<digest of the URL>``."""
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:12]
        return cache_dir() / "warehouse-local" / f"{self.protocol}-{digest}"

    def path(self, key: str) -> str:
        return "/".join([self.base.rstrip("/"), key]) if key else self.base

    def url(self, key: str) -> str:
        return self.fs.unstrip_protocol(self.path(key))

    def glob_url(self, folder: str, pattern: str) -> str:
        return self.fs.unstrip_protocol(f"{self.path(folder)}/{pattern}")

    def write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        self.fs.pipe_file(path, data)  # one PUT of the finished object

    def create(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        try:
            self.fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        # read back: exact where the create was conditional; where the filesystem checked then
        # wrote, the last writer's content wins and the others step back
        return self.read(key) == data

    def read(self, key: str) -> bytes | None:
        path = self.path(key)
        self.fs.invalidate_cache(path)
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        return self.fs.open(self.path(key), "rb")

    def exists(self, key: str) -> bool:
        path = self.path(key)
        self.fs.invalidate_cache(self.fs._parent(path))  # another worker may have written it
        return bool(self.fs.isfile(path))

    def modified(self, key: str) -> None:
        """None: an object's time is set by the store's clock, not the writer's, and cannot be set."""
        return None

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def remove_if_unchanged(self, key: str, data: bytes) -> bool:
        """Read, compare, delete: two removers at the same instant may both see ``data``."""
        if self.read(key) != data:
            return False
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            return False
        return True

    def move(self, key: str, target: str) -> None:
        """A copy then a delete on an object store (not atomic: a reader may briefly see both)."""
        destination = self.path(target)
        self.fs.makedirs(self.fs._parent(destination), exist_ok=True)
        self.fs.mv(self.path(key), destination)

    def is_folder(self, folder: str) -> bool:
        self.fs.invalidate_cache(self.path(folder))
        return bool(self.fs.isdir(self.path(folder)))

    def find(self, folder: str, suffix: str) -> list[str]:
        self.fs.invalidate_cache()
        if not self.fs.isdir(self.path(folder)):
            return []
        base = self.base.strip("/")
        found = (p.strip("/") for p in self.fs.glob(f"{self.path(folder)}/**/*{suffix}"))
        return [p[len(base) + 1 :] if base else p for p in found]

    def remove_temps(self, folder: str, older_than_s: float) -> int:
        """0: this backend writes no temp files."""
        return 0


def open_backend(root: str | os.PathLike[str]) -> Backend:
    """The backend of ``root``: a local path (or ``file://`` URL) or any other fsspec URL."""
    text = normalise_root(root)
    if is_url(text):
        import fsspec

        fs, path = fsspec.core.url_to_fs(text)
        if not set(_protocols(fs)) & set(LOCAL_PROTOCOLS):
            return FsspecBackend(fs, path)
        text = path  # file:// is a local directory: the local backend, its guarantees
    return LocalBackend(Path(text))


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
