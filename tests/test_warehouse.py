"""Warehouse: atomic idempotent parts, schemas, runs rows, DuckDB views, polars scans, `editcollapse sql`."""

from __future__ import annotations

import json
import math
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.core.errors import RunRefused
from editcollapse.warehouse import SCHEMAS, Warehouse, build_catalog, connect, runs, scan
from editcollapse.warehouse.runs import finish_run, read_attempts, read_run, start_run
from editcollapse.warehouse.schemas import PARTITION_COLUMNS


def _edit(case_id: str, **fields) -> dict:
    return {"run_id": "r1", "case_id": case_id, "status": "ok", **fields}


def _write(store: Warehouse, shard: int, *case_ids: str, run_id: str = "r1") -> None:
    store.write_part(
        "edits", [_edit(c) for c in case_ids], model="tiny-gpt2", method="rome", run_id=run_id, shard=shard
    )


def test_partition_columns_live_only_in_paths() -> None:
    for table, schema in SCHEMAS.items():
        assert not set(PARTITION_COLUMNS) & set(schema.names), table
        assert schema.field("run_id").nullable is False, table


def test_part_layout_and_rewrite_never_duplicates(tmp_path) -> None:
    store = Warehouse(tmp_path)
    _write(store, 3, "a", "b")
    path = tmp_path / "edits" / "model=tiny-gpt2" / "method=rome" / "run=r1" / "part-00003.parquet"
    assert path.is_file()
    _write(store, 3, "a", "b")  # the same shard again: replaced, not added
    assert sorted(store.read("edits").column("case_id").to_pylist()) == ["a", "b"]
    assert [p.name for p in store.parts("edits")] == ["part-00003.parquet"]
    assert not list(path.parent.glob("*.tmp"))


def test_partition_values_are_sanitised(tmp_path) -> None:
    store = Warehouse(tmp_path)
    folder = store.partition_dir("edits", "/models/my model", "rome", "run=1")
    assert folder.relative_to(tmp_path).parts == ("edits", "model=_models_my_model", "method=rome", "run=run_1")


def test_unknown_columns_and_bad_types_are_errors(tmp_path) -> None:
    store = Warehouse(tmp_path)
    with pytest.raises(ValueError, match=r"row 0 .*'edits'.*\['colour'\]"):
        store.write_part("edits", [_edit("a", colour="red")], model="m", method="x", run_id="r", shard=0)
    with pytest.raises(ValueError, match="do not fit its schema"):
        store.write_part(
            "ppl", [{"run_id": "r", "case_id": "a", "ppl_mean": "high"}], model="m", method="x", run_id="r", shard=0
        )
    with pytest.raises(KeyError, match="unknown warehouse table 'nope'"):
        store.table_dir("nope")


def test_stray_temp_file_is_ignored_by_every_reader(tmp_path) -> None:
    store = Warehouse(tmp_path)
    _write(store, 0, "a")
    folder = store.partition_dir("edits", "tiny-gpt2", "rome", "r1")
    (folder / ".part-00001.deadbeef.parquet.tmp").write_bytes(b"half a parquet file")
    # a complete-looking temp file too: a writer killed just before os.replace
    pq.write_table(store.read("edits").drop_columns(list(PARTITION_COLUMNS)), folder / ".part-00002.cafe.parquet.tmp")
    assert store.read("edits").column("case_id").to_pylist() == ["a"]
    assert connect(store).execute("SELECT case_id FROM edits").fetchall() == [("a",)]
    assert scan("edits", store).collect()["case_id"].to_list() == ["a"]
    assert store.remove_stray_temps("edits", "tiny-gpt2", "rome", "r1", older_than_s=0) == 2


def test_views_see_parts_written_while_a_session_is_open(tmp_path) -> None:
    store = Warehouse(tmp_path)
    session = connect(store)
    assert session.execute("SELECT count(*) FROM edits").fetchone() == (0,)  # empty table binds
    assert session.execute("SELECT count(*) FROM sequential").fetchone() == (0,)
    _write(store, 0, "a")
    assert session.execute("SELECT count(*) FROM edits").fetchone() == (1,)
    _write(store, 1, "b", "c", run_id="20261123")
    rows = session.execute("SELECT run, typeof(run), count(*) FROM edits GROUP BY ALL ORDER BY run").fetchall()
    assert rows == [("20261123", "VARCHAR", 2), ("r1", "VARCHAR", 1)]  # run ids stay text


def test_catalog_file_reads_its_own_folder_after_a_move_or_copy(tmp_path, monkeypatch) -> None:
    store = Warehouse(tmp_path / "wh")
    _write(store, 0, "a")
    build_catalog(store)
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "wh", moved)
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    _write(Warehouse(copy), 1, "b")  # the copy's own part: the moved original must not see it
    monkeypatch.chdir(moved)  # opened from the warehouse folder
    with duckdb.connect("catalog.duckdb", read_only=True) as connection:
        assert connection.execute("SELECT case_id, model, method FROM edits").fetchall() == [("a", "tiny-gpt2", "rome")]
        _write(Warehouse(moved), 2, "c")  # an open catalog sees parts written after it was opened
        assert connection.execute("SELECT count(*) FROM edits").fetchone() == (2,)
    monkeypatch.chdir(tmp_path)  # from elsewhere: file_search_path names the root
    with duckdb.connect(str(copy / "catalog.duckdb"), read_only=True) as connection:
        connection.execute(f"SET file_search_path = '{copy}'")
        assert connection.execute("SELECT case_id FROM edits ORDER BY 1").fetchall() == [("a",), ("b",)]


def test_nan_and_inf_perplexities_round_trip(tmp_path) -> None:
    store = Warehouse(tmp_path)
    rows = [
        {"run_id": "r", "case_id": c, "ppl_mean": v, "ppl_per_text": [v, 2.0], "collapsed": True}
        for c, v in (("nan", math.nan), ("inf", math.inf))
    ]
    store.write_part("ppl", rows, model="m", method="x", run_id="r", shard=0)
    got = dict(connect(store).execute("SELECT case_id, ppl_mean FROM ppl").fetchall())
    assert math.isnan(got["nan"]) and got["inf"] == math.inf
    frame = scan("ppl", store).collect()
    assert frame.filter(frame["case_id"] == "inf")["ppl_per_text"].to_list() == [[math.inf, 2.0]]


def test_runs_row_is_rewritten_in_place_and_guards_parameters(tmp_path) -> None:
    store = Warehouse(tmp_path)
    row = start_run(
        store,
        model="m",
        method="rome",
        run_id="r",
        stage="single_edit_sweep",
        dataset="geofacts",
        parameters={"limit": 4},
    )
    assert row["status"] == "running" and row["attempts"] == 1
    versions = json.loads(row["versions"])
    assert {"torch", "pyarrow", "duckdb", "prefect"} <= set(versions)
    again = start_run(
        store,
        model="m",
        method="rome",
        run_id="r",
        stage="single_edit_sweep",
        dataset="geofacts",
        parameters={"limit": 4},
    )
    assert again["attempts"] == 2 and again["started_at"] == row["started_at"]
    finish_run(store, "m", "rome", again, status="completed", n_cases=4)
    stored = read_run(store, "m", "rome", "r")
    assert stored["status"] == "completed" and stored["n_cases"] == 4 and stored["finished_at"] >= stored["started_at"]
    assert connect(store).execute("SELECT count(*) FROM runs").fetchone() == (1,)
    with pytest.raises(ValueError, match="exists with other parameters"):
        start_run(
            store,
            model="m",
            method="rome",
            run_id="r",
            stage="single_edit_sweep",
            dataset="geofacts",
            parameters={"limit": 5},
        )


def test_a_resume_with_another_identity_is_refused_and_every_attempt_keeps_its_provenance(
    tmp_path, monkeypatch
) -> None:
    store = Warehouse(tmp_path)
    identity = {"hparams_hash": "aaa", "model_revision": "r1", "cases_digest": "c1"}
    fields = dict(model="m", method="rome", run_id="r", stage="s", dataset="d", parameters={"limit": 4})
    monkeypatch.setattr(runs, "git_revision", lambda: "1111")
    first = start_run(store, identity=identity, **fields)
    finish_run(store, "m", "rome", first, status="failed")
    monkeypatch.setattr(runs, "git_revision", lambda: "2222+dirty")
    second = start_run(store, identity=identity, **fields)
    finish_run(store, "m", "rome", second, status="completed")
    attempts = read_attempts(store, "m", "rome", "r")
    assert [(a["attempt"], a["git_revision"], a["git_dirty"], a["status"]) for a in attempts] == [
        (1, "1111", False, "failed"),
        (2, "2222+dirty", True, "completed"),
    ]
    assert all(a["finished_at"] >= a["started_at"] and json.loads(a["versions"]) for a in attempts)
    stored = read_run(store, "m", "rome", "r")
    assert (stored["git_revision"], stored["attempts"]) == ("1111", 2)  # the run's row keeps its first attempt's
    changed = {**identity, "hparams_hash": "bbb", "cases_digest": "c2"}
    with pytest.raises(RunRefused, match="exists with other parameters or inputs") as refused:
        start_run(store, identity=changed, **fields)
    message = str(refused.value)
    assert "\n" not in message and "--run-id" in message
    assert "cases_digest: stored 'c1', now 'c2'; hparams_hash: stored 'aaa', now 'bbb'" in message
    assert len(read_attempts(store, "m", "rome", "r")) == 2  # a refused start is no attempt


def test_sql_cli_prints_and_exports(tmp_path) -> None:
    store = Warehouse(tmp_path / "wh")
    _write(store, 0, "a", "b")
    runner = CliRunner()
    base = ["sql", "--warehouse", str(store.root)]
    printed = runner.invoke(app, [*base, "SELECT case_id, model FROM edits ORDER BY case_id;"], env={"COLUMNS": "120"})
    assert printed.exit_code == 0, printed.output
    assert "case_id" in printed.output and "tiny-gpt2" in printed.output and "b" in printed.output
    csv = runner.invoke(app, [*base, "--format", "csv", "SELECT case_id FROM edits ORDER BY 1"])
    assert csv.exit_code == 0 and csv.stdout.splitlines() == ["case_id", "a", "b"]
    js = runner.invoke(app, [*base, "-f", "json", "SELECT case_id FROM edits ORDER BY 1"])
    assert [json.loads(line)["case_id"] for line in js.stdout.splitlines()] == ["a", "b"]
    out = tmp_path / "out.parquet"
    exported = runner.invoke(app, [*base, "-f", "parquet", "-o", str(out), "SELECT * FROM edits"])
    assert exported.exit_code == 0 and pq.read_table(out).num_rows == 2
    bad = runner.invoke(app, [*base, "SELECT * FROM no_such_table"])
    assert bad.exit_code == 2 and "no_such_table" in bad.output
