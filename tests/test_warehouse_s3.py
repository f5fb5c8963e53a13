"""The warehouse on ``s3://`` against a local S3 API server (moto): one-PUT parts, DuckDB and
polars over s3fs, and shard claims by S3 conditional writes (If-None-Match) raced by processes.

Needs ``s3fs`` and ``moto[s3]`` with flask (the ``dev`` extra installs them); skipped without them. The endpoint reaches s3fs the way a user configures a
MinIO or other S3-compatible store: ``FSSPEC_S3_ENDPOINT_URL`` / fsspec's config.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.claim_race import race_for_claims

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    import fsspec

    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["FSSPEC_S3_ENDPOINT_URL"] = endpoint  # for processes started from here (Dask workers)
    previous = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = {"endpoint_url": endpoint}
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("bucket")
    yield endpoint
    if previous is None:
        fsspec.config.conf.pop("s3", None)
    else:
        fsspec.config.conf["s3"] = previous
    os.environ.pop("FSSPEC_S3_ENDPOINT_URL", None)
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def test_parts_views_and_scans_on_s3(s3_endpoint) -> None:
    import polars as pl

    from editcollapse.warehouse import Warehouse, connect, scan

    root = f"s3://bucket/wh-{uuid.uuid4().hex[:8]}"
    store = Warehouse(root)
    assert store.is_url and store.protocol == "s3"
    rows = [
        {"run_id": "r1", "case_id": "a", "ppl_mean": 12.0, "collapsed": False},
        {"run_id": "r1", "case_id": "b", "ppl_mean": float("nan"), "collapsed": True},
    ]
    store.write_part("ppl", rows, model="m", method="rome", run_id="r1", shard=0)
    store.write_part("ppl", rows, model="m", method="rome", run_id="r1", shard=0)  # replaced, not added
    objects = sorted(p.rsplit("/", 1)[1] for p in store.fs.find(root))
    assert objects == ["part-00000.parquet", "part-schema.parquet"]
    session = connect(store)
    assert session.execute("SELECT model, run, case_id, collapsed FROM ppl ORDER BY case_id").fetchall() == [
        ("m", "r1", "a", False),
        ("m", "r1", "b", True),
    ]
    assert scan("ppl", store).filter(pl.col("collapsed")).select("case_id").collect().rows() == [("b",)]


@pytest.mark.slow
def test_claims_on_s3_are_exclusive_across_processes(s3_endpoint, tmp_path) -> None:
    """Four processes race for the same 20 shards of one s3:// run: every shard is won exactly once
    (S3 If-None-Match: the losers' PUTs get 412)."""
    root = f"s3://bucket/race-{uuid.uuid4().hex[:8]}"
    won = race_for_claims(root, env={**os.environ, **CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": s3_endpoint})
    assert sorted(s for shards in won for s in shards) == list(range(20))
    assert sum(1 for shards in won if shards) >= 1


def test_sweep_into_s3_matches_a_local_sweep(s3_endpoint, tmp_path) -> None:
    from editcollapse.stages.sweep.plan import SweepConfig
    from editcollapse.stages.sweep.run import run_sweep
    from editcollapse.warehouse import Warehouse, connect
    from tests.sweep_cases import write_files

    cases_file, corpus = write_files(tmp_path, 3)
    spec = dict(
        model="tiny-gpt2",
        method="rome",
        dataset=str(cases_file),
        shard_size=2,
        ppl_corpus=str(corpus),
        run_id="s3-vs-local",
    )
    run_sweep(SweepConfig(**spec), Warehouse(tmp_path / "local"))
    remote = Warehouse(f"s3://bucket/sweep-{uuid.uuid4().hex[:8]}")
    summary = run_sweep(SweepConfig(**spec), remote)
    assert summary.n_cases == 3 and summary.status == "completed" and remote.claims() == []
    query = (
        "SELECT case_id, shard, status, collapsed, round(ppl_mean, 3) FROM ppl JOIN edits "
        "USING (case_id, shard) ORDER BY case_id"
    )
    assert connect(remote).execute(query).fetchall() == connect(tmp_path / "local").execute(query).fetchall()


@pytest.mark.slow
def test_dask_workers_write_one_s3_warehouse(s3_endpoint, tmp_path, monkeypatch) -> None:
    """A sweep on a 2-worker Dask local cluster whose worker processes write to s3:// — the
    setting of workers on several machines sharing one object-store warehouse."""
    from editcollapse.orchestration.flows.sweep import single_edit_sweep
    from editcollapse.stages.sweep.plan import SweepConfig
    from editcollapse.warehouse import Warehouse, connect
    from tests.sweep_cases import write_files

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    cases_file, corpus = write_files(tmp_path, 4)
    root = f"s3://bucket/dask-{uuid.uuid4().hex[:8]}"
    summary = single_edit_sweep(
        SweepConfig(
            model="tiny-gpt2",
            method="rome",
            dataset=str(cases_file),
            shard_size=2,
            ppl_corpus=str(corpus),
            run_id="dask-s3",
        ),
        warehouse=root,
        progress_bar=False,
        task_runner="dask:2",
    )
    assert summary.n_cases == 4 and summary.status == "completed"
    store = Warehouse(root)
    assert [p.rsplit("/", 1)[1] for p in store.parts("ppl")] == ["part-00000.parquet", "part-00001.parquet"]
    assert connect(store).execute("SELECT count(DISTINCT case_id), count(*) FROM ppl").fetchone() == (4, 4)
    assert store.claims() == []
