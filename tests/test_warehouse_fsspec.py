"""The warehouse on an fsspec URL root (``memory://``, ``file://``): atomic deterministic parts,
runs rows, DuckDB views and polars scans over the URL, shard claims, and a real sweep into it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import fsspec
import pytest

from editcollapse.warehouse import Warehouse, build_catalog, connect, scan
from editcollapse.warehouse.backends import FsspecBackend, is_url, normalise_root
from editcollapse.warehouse.runs import finish_run, read_run, start_run
from tests.claim_race import race_for_claims


@pytest.fixture
def memory_root():
    root = f"memory://wh-{uuid.uuid4().hex[:8]}"
    yield root
    fs = fsspec.filesystem("memory")
    path = fs._strip_protocol(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _edits(*case_ids: str, run_id: str = "r1") -> list[dict]:
    return [{"run_id": run_id, "case_id": c, "status": "ok"} for c in case_ids]


def test_roots_are_recognised_and_survive_pathlib() -> None:
    assert is_url("s3://bucket/wh") and is_url("memory://wh") and not is_url("/tmp/wh")
    assert not is_url("C:/wh") and not is_url("warehouse")
    assert normalise_root(Path("s3://bucket/wh")) == "s3://bucket/wh"  # a Path option made it s3:/bucket
    assert Warehouse(Path("memory://x")).location == Warehouse("memory://x").location == "memory:///x"
    assert Warehouse(Warehouse("memory://x")).location == "memory:///x"


def test_memory_root_parts_are_deterministic_and_read_back(memory_root) -> None:
    store = Warehouse(memory_root)
    assert store.is_url and isinstance(store.root, str)
    store.write_part("edits", _edits("a", "b"), model="tiny/gpt2", method="rome", run_id="r1", shard=3)
    store.write_part("edits", _edits("a", "b"), model="tiny/gpt2", method="rome", run_id="r1", shard=3)
    store.write_part("edits", _edits("c"), model="tiny/gpt2", method="rome", run_id="r1", shard=4)
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[1] for p in fs.find(fs._strip_protocol(memory_root)))
    # one object per part, the schema anchor, no temp objects: a part is one PUT of the whole file
    assert names == ["part-00003.parquet", "part-00004.parquet", "part-schema.parquet"]
    assert [p.rsplit("/", 1)[1] for p in store.parts("edits")] == ["part-00003.parquet", "part-00004.parquet"]
    assert store.part_path("edits", "tiny/gpt2", "rome", "r1", 3).startswith("memory:///")
    assert store.has_part("edits", "tiny/gpt2", "rome", "r1", 4)
    assert not store.has_part("edits", "tiny/gpt2", "rome", "r1", 5)
    assert store.read_part("edits", "tiny/gpt2", "rome", "r1", 4, columns=["case_id"]).to_pylist() == [{"case_id": "c"}]
    table = store.read("edits", model="tiny/gpt2")
    assert sorted(table.column("case_id").to_pylist()) == ["a", "b", "c"]
    assert set(table.column("model").to_pylist()) == {"tiny_gpt2"}
    assert store.read("edits", run_id="other").num_rows == 0
    assert store.remove_stray_temps("edits", "tiny/gpt2", "rome", "r1", older_than_s=0) == 0


def test_duckdb_views_and_polars_scans_over_a_url(memory_root) -> None:
    store = Warehouse(memory_root)
    connection = connect(store)  # before any data: every view binds on the schema anchors
    assert connection.execute("SELECT count(*) FROM ppl").fetchone() == (0,)
    store.write_part(
        "ppl",
        [
            {"run_id": "r1", "case_id": "a", "ppl_mean": 12.5, "collapsed": False},
            {"run_id": "r1", "case_id": "b", "ppl_mean": float("inf"), "collapsed": True},
        ],
        model="m",
        method="rome",
        run_id="r1",
        shard=0,
    )
    store.write_part(
        "ppl",
        [{"run_id": "r2", "case_id": "a", "ppl_mean": 3000.0, "collapsed": True}],
        model="n",
        method="rome",
        run_id="r2",
        shard=0,
    )
    # the open session sees parts written after it started
    got = connection.execute("SELECT model, run, case_id, ppl_mean FROM ppl ORDER BY model, case_id").fetchall()
    assert got == [("m", "r1", "a", 12.5), ("m", "r1", "b", float("inf")), ("n", "r2", "a", 3000.0)]
    import polars as pl

    frame = scan("ppl", store).filter(pl.col("collapsed")).sort("model").collect()
    assert frame.select("model", "run", "case_id").rows() == [("m", "r1", "b"), ("n", "r2", "a")]
    catalog = build_catalog(store)  # a catalog file of a URL root lives in its local folder
    assert catalog.parent == store.local_dir and catalog.is_file()


def test_runs_rows_on_a_url(memory_root) -> None:
    store = Warehouse(memory_root)
    row = start_run(store, model="m", method="rome", run_id="r1", stage="test", dataset="d", parameters={"a": 1})
    assert read_run(store, "m", "rome", "r1")["status"] == "running"
    finish_run(store, "m", "rome", row, status="completed", n_cases=2)
    again = start_run(store, model="m", method="rome", run_id="r1", stage="test", dataset="d", parameters={"a": 1})
    assert again["attempts"] == 2 and again["started_at"] == row["started_at"]
    with pytest.raises(ValueError, match="other parameters"):
        start_run(store, model="m", method="rome", run_id="r1", stage="test", dataset="d", parameters={"a": 2})


def test_url_claims_are_exclusive_and_stale_ones_are_broken(memory_root) -> None:
    store = Warehouse(memory_root)
    key = ("m", "rome", "run-1")
    assert store.claim(*key, 3)
    assert not store.claim(*key, 3)  # held: another worker computes it
    assert not Warehouse(memory_root).claim(*key, 3)  # a second handle on the same root agrees
    assert store.claim(*key, 4)
    assert store.claims() == [
        "model=m/method=rome/run=run-1/shard-00003.claim",
        "model=m/method=rome/run=run-1/shard-00004.claim",
    ]
    fs = store.fs
    dead = f"{'another-host'} 1 {time.time() - 3600:.3f} x\n".encode()
    fs.pipe_file(store.claim_path(*key, 3), dead)  # its holder stopped an hour ago
    assert store.claim(*key, 3, stale_after_s=60)
    assert not store.claim(*key, 3, stale_after_s=60)
    store.touch_claim(*key, 3)
    assert not store.claim(*key, 3, stale_after_s=60)
    store.release(*key, 3)
    store.release(*key, 4)
    assert store.claims() == []
    assert store.claim(*key, 3)


def test_best_effort_claims_read_back_who_won(tmp_path) -> None:
    """A filesystem without conditional writes: the claim is read back; losing the race is a no."""
    from fsspec.implementations.dirfs import DirFileSystem

    store = Warehouse(FsspecBackend(DirFileSystem(path=str(tmp_path), fs=fsspec.filesystem("file")), "wh"))
    assert store.protocol not in ("memory", "s3", "gs")
    key = ("m", "rome", "r")
    assert store.claim(*key, 0)
    assert not store.claim(*key, 0)
    assert (tmp_path / "wh" / "_claims" / "model=m" / "method=rome" / "run=r" / "shard-00000.claim").is_file()


def test_file_url_is_a_local_directory_with_its_guarantees(tmp_path) -> None:
    store = Warehouse(f"file://{tmp_path}/wh")
    assert not store.is_url and store.root == tmp_path / "wh"
    store.write_part("edits", _edits("a"), model="m", method="rome", run_id="r1", shard=0)
    assert (tmp_path / "wh" / "edits" / "model=m" / "method=rome" / "run=r1" / "part-00000.parquet").is_file()
    assert connect(f"file://{tmp_path}/wh").execute("SELECT case_id FROM edits").fetchall() == [("a",)]


def test_claims_across_processes_on_a_file_url(tmp_path) -> None:
    """Four processes race for the same 20 shards of a ``file://`` root: each shard is won once."""
    root = f"file://{tmp_path}/wh"
    won = race_for_claims(root)
    assert sorted(s for shards in won for s in shards) == list(range(20))


def test_sweep_into_a_url_root_matches_a_local_sweep(tmp_path, memory_root) -> None:
    """The real sweep engine (tiny GPT-2, ROME) writes the same rows into memory:// as into a
    directory, resumes from it (a second run computes nothing) and HardCF reads it back."""
    from editcollapse.stages.hardcf.config import HardCFConfig
    from editcollapse.stages.hardcf.select import run_selection
    from editcollapse.stages.sweep.plan import SweepConfig
    from editcollapse.stages.sweep.run import run_sweep
    from tests.sweep_cases import write_files

    cases_file, corpus = write_files(tmp_path, 3)
    spec = dict(
        model="tiny-gpt2",
        method="rome",
        dataset=str(cases_file),
        shard_size=2,
        ppl_corpus=str(corpus),
        run_id="url-vs-local",
    )
    local = run_sweep(SweepConfig(**spec), Warehouse(tmp_path / "local"))
    remote_store = Warehouse(memory_root)
    remote = run_sweep(SweepConfig(**spec), remote_store)
    assert remote.n_cases == local.n_cases == 3 and remote.status == "completed"
    query = "SELECT case_id, shard, status, collapsed, round(ppl_mean, 3) FROM ppl JOIN edits USING (case_id, shard) ORDER BY case_id"
    assert connect(remote_store).execute(query).fetchall() == connect(tmp_path / "local").execute(query).fetchall()
    stamps = {p: remote_store.fs.info(p)["created"] for p in remote_store.parts("edits")}
    again = run_sweep(SweepConfig(**spec), Warehouse(memory_root))  # resumes: every shard is there
    assert again.n_cases == 3 and {p: remote_store.fs.info(p)["created"] for p in remote_store.parts("edits")} == stamps
    assert remote_store.claims() == []
    selection = run_selection(HardCFConfig(threshold=0.0), remote_store)  # every case "collapsed" at threshold 0
    assert selection.n_hard_cases == 3
    assert Path(selection.export).parent == remote_store.local_dir / "exports"
