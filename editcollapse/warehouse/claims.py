"""Shard claims: of several workers on one run id, one computes each shard; a dead worker's shard is taken over.

A claim is a small file (its key: :func:`.layout.claim_key`) holding ``host pid heartbeat nonce``.
The protocol, the same on every :class:`~editcollapse.warehouse.backends.Backend`:

* **claim**: create the claim only if absent (:meth:`Backend.create`); the creator holds it. Where
  the backend's create is exclusive (a local or shared filesystem: hard link; S3 ``If-None-Match``,
  GCS, ``memory://``: conditional write) exactly one worker wins. Elsewhere the last writer wins
  the read-back and the others step back, but two workers racing within the same instant may both
  compute a shard — wasted work only: its parts have the same names and rows, so the tables never
  hold it twice.
* **touch**: the holder rewrites the claim with a fresh heartbeat (after every case).
* **stale takeover**: a claim whose heartbeat is older than ``stale_after_s`` (its holder stopped
  refreshing it), or that names a process of this host that no longer exists (killed), is deleted
  if it still holds what was judged (:meth:`Backend.remove_if_unchanged`) and claimed afresh. The
  heartbeat is the file's modification time where the backend keeps one (local), else the time
  written in the claim (object stores). Content that cannot be parsed counts as a live holder
  until its heartbeat ages.
* **release**: the holder deletes the claim when the shard's parts are written. A holder killed
  between the two leaves a claim on a finished shard: the next worker to find the shard finished
  deletes it once it is stale (:func:`clear_if_dead`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from editcollapse.warehouse import layout
from editcollapse.warehouse.backends import Backend

STALE_CLAIM_S = 1800.0  # a claim not refreshed for this long belongs to a dead worker


def claim(backend: Backend, key: str, *, stale_after_s: float = STALE_CLAIM_S) -> bool:
    """Take the claim ``key`` (True), or find it held by a live worker (False)."""
    for _ in range(2):
        if backend.create(key, _content()):
            return True
        if _judge(backend, key, stale_after_s) == "alive":
            return False
    return False


def clear_if_dead(backend: Backend, key: str, *, stale_after_s: float = STALE_CLAIM_S) -> bool:
    """Delete the claim ``key`` if its holder is dead (a worker killed after its shard's parts were
    written, before it released the claim); whether it was deleted."""
    return _judge(backend, key, stale_after_s) == "removed"


def _judge(backend: Backend, key: str, stale_after_s: float) -> str:
    """``"gone"`` (no claim, or released meanwhile), ``"alive"`` (held by a live worker), or
    ``"removed"`` (a dead holder's claim, deleted now if it still held what was judged)."""
    held = backend.read(key)
    if held is None:
        return "gone"
    try:
        modified = backend.modified(key)
    except FileNotFoundError:
        return "gone"
    if not is_stale(held, modified, stale_after_s):
        return "alive"
    backend.remove_if_unchanged(key, held)
    return "removed"


def touch(backend: Backend, key: str) -> None:
    """Show the claim's holder is alive (a fresh heartbeat)."""
    backend.write(key, _content())


def release(backend: Backend, key: str) -> None:
    backend.remove(key)


def held(backend: Backend) -> list[str]:
    """Every claim held now, as paths relative to the claims folder."""
    prefix = f"{layout.CLAIMS}/"
    return sorted(key.removeprefix(prefix) for key in backend.find(layout.CLAIMS, layout.CLAIM_SUFFIX))


def is_stale(content: bytes, modified: float | None, stale_after_s: float) -> bool:
    """Whether a claim holding ``content``, last written at ``modified`` (None: the heartbeat in its
    content counts), belongs to a dead worker."""
    now = time.time()
    if modified is not None and now - modified >= stale_after_s:
        return True
    try:
        host, pid, heartbeat = content.decode(errors="replace").split()[:3]
        if modified is None and now - float(heartbeat) >= stale_after_s:
            return True
        if host == socket.gethostname():
            os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False  # unreadable, half-written or not ours to signal: treat as alive
    return False


def _content() -> bytes:
    return f"{socket.gethostname()} {os.getpid()} {time.time():.3f} {uuid.uuid4().hex[:8]}\n".encode()
