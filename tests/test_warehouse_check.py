"""Integrity: `editcollapse warehouse check` finds bad parts (unreadable, wrong columns, misplaced)
per table, `--repair` quarantines them; a bad part blocks only its own table, naming itself; a
sweep re-run quarantines and recomputes the bad parts of its shards."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.run import run_sweep
from editcollapse.warehouse import Warehouse, connect
from editcollapse.warehouse.layout import QUARANTINE
from tests.sweep_cases import write_files
from tests.warehouse_backends import BACKEND_KINDS, fresh_backend


def _shard(store: Warehouse, shard: int, *case_ids: str) -> None:
    for table in ("ppl", "edits"):
        store.write_part(
            table,
            [
                {"run_id": "r1", "case_id": c, "ppl_mean": 5.0} if table == "ppl" else {"run_id": "r1", "case_id": c}
                for c in case_ids
            ],
            model="m",
            method="rome",
            run_id="r1",
            shard=shard,
        )


def _truncate(store: Warehouse, table: str, shard: int) -> str:
    """Cut a part in half, as a full disk or a killed copy would; return its location."""
    key = f"{table}/model=m/method=rome/run=r1/part-{shard:05d}.parquet"
    data = store.backend.read(key)
    store.backend.write(key, data[: len(data) // 2])
    return str(store.backend.url(key))


@pytest.mark.parametrize("kind", BACKEND_KINDS)
def test_a_bad_part_blocks_only_its_table_and_names_itself(tmp_path, kind) -> None:
    with fresh_backend(kind, tmp_path) as backend:
        store = Warehouse(backend)
        _shard(store, 0, "a", "b")
        _shard(store, 1, "c")
        session = connect(store)  # opened before the damage: the error comes at query time
        bad = _truncate(store, "ppl", 1)
        fresh = connect(store)  # opened after: the ppl view cannot bind, the others can
        for each in (session, fresh):
            assert each.execute("SELECT count(*) FROM edits").fetchone() == (3,)
            with pytest.raises(duckdb.Error, match="part-00001.parquet"):
                each.execute("SELECT count(*) FROM ppl").fetchall()
        with pytest.raises(duckdb.Error, match="warehouse check --repair"):
            fresh.execute("SELECT case_id FROM ppl").fetchall()
        assert [c[0] for c in fresh.execute("DESCRIBE ppl").fetchall()][:2] == ["run_id", "case_id"]
        result = CliRunner().invoke(app, ["sql", "-w", store.location, "SELECT count(*) FROM ppl"])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
        assert "part-00001.parquet" in result.output and "warehouse check --repair" in result.output
        assert bad.endswith("part-00001.parquet")


def test_analyse_names_a_bad_part_in_one_line(tmp_path) -> None:
    store = Warehouse(tmp_path / "wh")
    _shard(store, 0, "a")
    _truncate(store, "ppl", 0)
    result = CliRunner().invoke(app, ["analyse", "-w", str(store.root), "-o", str(tmp_path / "out"), "--no-prefect"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "part-00000.parquet" in result.output and "warehouse check --repair" in result.output


@pytest.mark.parametrize("kind", BACKEND_KINDS)
def test_check_reports_per_table_and_repair_quarantines(tmp_path, kind) -> None:
    with fresh_backend(kind, tmp_path) as backend:
        store = Warehouse(backend)
        _shard(store, 0, "a")
        _shard(store, 1, "b")
        _shard(store, 2, "c")
        _truncate(store, "ppl", 1)
        wrong = pa.table({"run_id": ["r1"], "case_id": ["x"], "ppl_mean": ["high"]})  # a string where a double goes
        store.backend.write("ppl/model=m/method=rome/run=r1/part-00007.parquet", _parquet(wrong))
        misplaced = pa.table({"run_id": ["r1"], "case_id": ["y"]})  # what COPY … PARTITION_BY leaves
        store.backend.write("edits/model=m/data_0.parquet", _parquet(misplaced))
        store.backend.remove("edits/model=m/method=rome/run=r1/part-00002.parquet")  # shard 2 unfinished
        runner = CliRunner()
        found = runner.invoke(app, ["warehouse", "check", "-w", store.location])
        assert found.exit_code == 1, found.output
        lines = found.output.splitlines()
        assert any(line.startswith("ppl ") and " 4 part(s)  2 bad  1 unfinished" in line for line in lines)
        assert any(line.startswith("edits ") and "1 bad" in line for line in lines)
        assert any(line.startswith("runs ") and "0 bad" in line for line in lines)
        assert any("part-00001.parquet: unreadable Parquet" in line for line in lines)
        assert any("part-00007.parquet: column 'ppl_mean' is string" in line for line in lines)
        assert any("data_0.parquet: not at edits/model=<m>" in line for line in lines)
        assert any("part-00002.parquet: its shard has no edits part" in line for line in lines)
        repaired = runner.invoke(app, ["warehouse", "check", "-w", store.location, "--repair"])
        assert repaired.exit_code == 0 and "moved 3 bad part(s)" in repaired.output, repaired.output
        quarantined = store.backend.find(QUARANTINE, ".parquet")
        assert sorted(key.split("/", 2)[2] for key in quarantined) == [
            "edits/model=m/data_0.parquet",
            "ppl/model=m/method=rome/run=r1/part-00001.parquet",
            "ppl/model=m/method=rome/run=r1/part-00007.parquet",
        ]
        again = runner.invoke(app, ["warehouse", "check", "-w", store.location])
        assert again.exit_code == 0 and "no bad parts" in again.output, again.output
        assert connect(store).execute("SELECT case_id FROM ppl ORDER BY 1").fetchall() == [("a",), ("c",)]


def test_a_bad_anchor_is_quarantined_and_written_again(tmp_path) -> None:
    store = Warehouse(tmp_path / "wh")
    _shard(store, 0, "a")
    anchor = store.ensure_anchor("ppl")
    anchor.write_bytes(b"not parquet")
    assert store.check(["ppl"])[0].bad[0].key.endswith("part-schema.parquet")
    store.quarantine(store.check(["ppl"]))
    assert pq.read_schema(anchor).names[:2] == ["run_id", "case_id"]
    assert not store.check(["ppl"])[0].bad


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


SWEPT = {
    "ppl": "SELECT case_id, shard, ppl_mean, ppl_per_text, collapsed FROM ppl ORDER BY case_id",
    "edits": "SELECT case_id, shard, status, delta_fro FROM edits ORDER BY case_id",
    "cases": "SELECT case_id, shard, subject FROM cases ORDER BY case_id",
    "edit_metrics": "SELECT case_id, phase, metric, value FROM edit_metrics ORDER BY ALL",
}


def test_repair_and_rerun_restore_the_uninterrupted_sweep(tmp_path) -> None:
    cases_file, corpus = write_files(tmp_path, 5)
    store = Warehouse(tmp_path / "wh")
    spec = SweepConfig(model="tiny-gpt2", method="rome", dataset=str(cases_file), shard_size=2, ppl_corpus=str(corpus))
    run_sweep(spec, store)
    expected = {table: connect(store).execute(query).fetchall() for table, query in SWEPT.items()}
    prefix = f"model=tiny-gpt2/method=rome/run={spec.run_id}"
    store.backend.write(f"ppl/{prefix}/part-00001.parquet", b"PAR1 cut short")
    runner = CliRunner()
    assert runner.invoke(app, ["warehouse", "check", "-w", str(store.root)]).exit_code == 1
    assert runner.invoke(app, ["warehouse", "check", "-w", str(store.root), "--repair"]).exit_code == 0
    run_sweep(spec, store)  # shard 1 lacks its ppl part now: recomputed, its other parts replaced
    assert {table: connect(store).execute(query).fetchall() for table, query in SWEPT.items()} == expected
    # without a check first: the re-run verifies the parts it trusts and recomputes a bad shard itself
    edits = store.backend.path(f"edits/{prefix}/part-00002.parquet")
    edits.write_bytes(edits.read_bytes()[:100])
    summary = run_sweep(spec, store)
    assert summary.status == "completed" and summary.n_cases == 5
    assert {table: connect(store).execute(query).fetchall() for table, query in SWEPT.items()} == expected
    quarantined = sorted(key.split("/", 2)[2] for key in store.backend.find(QUARANTINE, ".parquet"))
    assert quarantined == [f"edits/{prefix}/part-00002.parquet", f"ppl/{prefix}/part-00001.parquet"]
