"""The two warehouse backends, opened afresh for a test: the backend tests and the claim tests run on both."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec

from editcollapse.warehouse.backends import Backend, open_backend

BACKEND_KINDS = ("local", "memory")


@contextmanager
def fresh_backend(kind: str, tmp_path: Path) -> Iterator[Backend]:
    """A ``LocalBackend`` on a new folder, or an ``FsspecBackend`` on a new ``memory://`` root (removed after)."""
    if kind == "local":
        yield open_backend(tmp_path / "wh")
        return
    root = f"memory://wh-{uuid.uuid4().hex[:8]}"
    try:
        yield open_backend(root)
    finally:
        fs = fsspec.filesystem("memory")
        if fs.exists(fs._strip_protocol(root)):
            fs.rm(fs._strip_protocol(root), recursive=True)
