"""Fetch a released data file once into the cache, checking its sha256.

Why a module of its own: every public file (CounterFact, ZsRE, ME-PPL …) goes through the same
path — cached copy first, then the network, then a message that says which file to put where.
Downloads land in ``*.part`` and are renamed only after the checksum passed, so an interrupted or
corrupted download never poses as the real file.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path


class DataUnavailable(FileNotFoundError):
    """A data file is neither on disk nor downloadable; the message says where to put it."""


class ChecksumMismatch(ValueError):
    """A downloaded file's sha256 differs from the pinned one (the file is not kept)."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, *, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless it is already there; verify ``sha256`` when pinned.

    A cached file is trusted (it passed the check when it was written). Raises
    :class:`ChecksumMismatch` on a bad download and :class:`DataUnavailable` when the URL cannot
    be reached, naming both the URL and ``dest`` so the user can place the file by hand.
    """
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise DataUnavailable(f"could not download {url} ({exc}); put the file at {dest}") from exc
    if sha256 is not None:
        got = sha256_of(partial)
        if got != sha256:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{url}: sha256 {got} does not match the pinned {sha256}; nothing was written to {dest}"
            )
    os.replace(partial, dest)
    return dest
