"""Distributed sweep: shards on a 2-worker Dask local cluster give the same tables as the local
run; shard claims keep several workers on one run id from computing a shard twice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from editcollapse.warehouse import Warehouse, connect
from tests.sweep_cases import write_files

# (exact key columns, float columns) of every row; the edits of all four cases must have succeeded
COMPARED = (
    "SELECT case_id, shard, collapsed, ppl_mean, ppl_corpus FROM ppl ORDER BY case_id",
    "SELECT case_id, shard, status, delta_fro FROM edits WHERE status = 'ok' ORDER BY case_id",
)


@pytest.fixture(autouse=True)
def _patient_ephemeral_server(monkeypatch) -> None:
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@pytest.mark.slow
def test_dask_cluster_sweep_matches_local_sweep(tmp_path) -> None:
    from editcollapse.orchestration.flows.sweep import single_edit_sweep
    from editcollapse.stages.sweep.plan import SweepConfig
    from editcollapse.stages.sweep.run import run_sweep

    cases_file, corpus = write_files(tmp_path, 4)
    config = SweepConfig(
        model="tiny-gpt2",
        method="rome",
        dataset=str(cases_file),
        shard_size=2,
        ppl_corpus=str(corpus),
        run_id="dask-vs-local",
    )
    local = run_sweep(config, Warehouse(tmp_path / "local"))
    distributed = single_edit_sweep(config, warehouse=str(tmp_path / "dask"), progress_bar=False, task_runner="dask:2")
    assert distributed.n_cases == local.n_cases == 4 and distributed.status == "completed"
    for query in COMPARED:
        expected = connect(Warehouse(tmp_path / "local")).execute(query).fetchall()
        got = connect(Warehouse(tmp_path / "dask")).execute(query).fetchall()
        assert len(expected) == 4 and len(got) == 4
        for row, want in zip(got, expected):
            assert row[:3] == want[:3]
            # Dask workers run torch on one thread (OMP_NUM_THREADS=1), the local run on two: float32
            # sums differ in the last bits, and ROME's v* optimisation carries that to ~1e-6 relative
            assert row[3:] == pytest.approx(want[3:], rel=1e-4, abs=0.0), (row, want)
    assert not list((tmp_path / "dask").glob("_claims/**/*.claim"))  # every claim released


def test_shard_claim_is_exclusive_and_stale_claims_are_broken(tmp_path) -> None:
    store = Warehouse(tmp_path)
    key = ("m", "rome", "run-1")
    assert store.claim(*key, 3)
    assert not store.claim(*key, 3)  # a live claim: another worker computes the shard
    assert store.claim(*key, 4)  # other shards are free
    old = time.time() - 3600
    os.utime(store.claim_path(*key, 3), (old, old))  # its holder died an hour ago
    assert store.claim(*key, 3, stale_after_s=60)
    assert not store.claim(*key, 3, stale_after_s=60)
    store.release(*key, 3)
    assert store.claim(*key, 3)
    store.claim_path(*key, 4).write_text(f"{socket.gethostname()} {_dead_pid()} 0\n")  # a killed worker's
    assert store.claim(*key, 4)
    left = sorted(p.name for p in store.claim_path(*key, 3).parent.iterdir())
    assert left == ["shard-00003.claim", "shard-00004.claim"]  # no debris of the broken claim


def test_a_shard_claimed_elsewhere_is_skipped(tmp_path) -> None:
    from editcollapse.stages.sweep.plan import SweepConfig
    from editcollapse.stages.sweep.resources import ResourceCache
    from editcollapse.stages.sweep.shard import run_shard
    from tests.sweep_cases import tiny_cases

    spec = SweepConfig(model="tiny-gpt2", method="rome", dataset="test", run_id="claimed")
    store = Warehouse(tmp_path)
    assert store.claim(spec.model, spec.method, spec.run_id, 0)  # another worker holds shard 0
    result = run_shard(spec, 0, tiny_cases(2), store, cache=ResourceCache())
    assert result.claimed_elsewhere and result.n_cases == 0
    assert not store.has_part("edits", spec.model, spec.method, spec.run_id, 0)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
