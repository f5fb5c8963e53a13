"""The shard claim protocol, run on both backends: exclusive claims, heartbeats, stale takeover, release."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from editcollapse.warehouse import claims, layout
from tests.warehouse_backends import BACKEND_KINDS, fresh_backend

KEY = layout.claim_key("m", "rome", "run-1", 3)


@pytest.fixture(params=BACKEND_KINDS)
def backend(request, tmp_path):
    with fresh_backend(request.param, tmp_path) as opened:
        yield opened


def _hold(backend, host: str, pid: int, heartbeat: float) -> None:
    """Make ``KEY`` a claim of ``host``/``pid`` last refreshed at ``heartbeat`` (the time in its content
    and, where the backend keeps one, its file time)."""
    backend.write(KEY, f"{host} {pid} {heartbeat:.3f} feedbeef\n".encode())
    if backend.modified(KEY) is not None:
        os.utime(backend.path(KEY), (heartbeat, heartbeat))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_claim_is_held_until_released(backend) -> None:
    assert claims.claim(backend, KEY)
    assert not claims.claim(backend, KEY)
    assert claims.held(backend) == ["model=m/method=rome/run=run-1/shard-00003.claim"]
    claims.release(backend, KEY)
    claims.release(backend, KEY)  # twice: nothing to do
    assert claims.held(backend) == []
    assert claims.claim(backend, KEY)


def test_stale_takeover_and_heartbeats(backend) -> None:
    _hold(backend, "another-host", 1, time.time() - 120)
    assert not claims.claim(backend, KEY)  # two minutes old: live under the default of 30 minutes
    assert claims.claim(backend, KEY, stale_after_s=60)  # its holder stopped refreshing it
    assert not claims.claim(backend, KEY, stale_after_s=60)  # now ours, and fresh
    _hold(backend, "another-host", 1, time.time() - 120)
    claims.touch(backend, KEY)  # the holder is alive after all
    assert not claims.claim(backend, KEY, stale_after_s=60)
    assert claims.held(backend) == ["model=m/method=rome/run=run-1/shard-00003.claim"]


def test_a_killed_holder_of_this_host_loses_its_claim(backend) -> None:
    _hold(backend, socket.gethostname(), _dead_pid(), time.time())
    assert claims.claim(backend, KEY)
    _hold(backend, "another-host", _dead_pid(), time.time())  # another machine's pid says nothing here
    assert not claims.claim(backend, KEY)


def test_unreadable_content_counts_as_a_live_holder(backend) -> None:
    backend.write(KEY, b"half a cla")
    assert not claims.claim(backend, KEY)


def test_a_takeover_leaves_only_the_new_claim(backend) -> None:
    _hold(backend, socket.gethostname(), _dead_pid(), time.time() - 3600)
    assert claims.claim(backend, KEY)
    folder = KEY.rsplit("/", 1)[0]
    assert [key.rsplit("/", 1)[1] for key in backend.find(folder, "")] == ["shard-00003.claim"]
