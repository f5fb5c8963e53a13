"""Reading the warehouse cannot change it: `editcollapse sql` runs one query and nothing else, the
session itself reads only the tables' folders; read commands refuse a folder that is not a
warehouse; a moved warehouse answers; JSON export is JSON (NaN/inf as text)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import duckdb
import fsspec
import pytest
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.warehouse import Warehouse, build_catalog, connect
from editcollapse.warehouse.catalog import check_query
from tests.warehouse_backends import fresh_backend

PART = "ppl/model=m/method=rome/run=r1/part-00000.parquet"


def _fill(store: Warehouse) -> None:
    store.write_part(
        "edits",
        [{"run_id": "r1", "case_id": c, "status": "ok"} for c in ("a", "b", "c")],
        model="m",
        method="rome",
        run_id="r1",
        shard=0,
    )
    values = {"a": 12.5, "b": math.nan, "c": math.inf}
    store.write_part(
        "ppl",
        [{"run_id": "r1", "case_id": c, "ppl_mean": v, "ppl_per_text": [v, -math.inf]} for c, v in values.items()],
        model="m",
        method="rome",
        run_id="r1",
        shard=0,
    )


@pytest.fixture
def local_warehouse(tmp_path) -> Warehouse:
    store = Warehouse(tmp_path / "wh")
    _fill(store)
    build_catalog(store)  # every table anchored, and the catalog file an ATTACH would aim at
    return store


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _write_statements(root: str) -> list[str]:
    return [
        "DROP VIEW ppl",
        f"COPY (SELECT 42 AS junk) TO '{root}/{PART}'",
        f"COPY (SELECT * FROM edits) TO '{root}/edits' (FORMAT parquet, PARTITION_BY (model), OVERWRITE)",
        f"ATTACH '{root}/catalog.duckdb' AS cat",
        f"ATTACH '{root}/catalog.duckdb' AS cat; DROP VIEW cat.ppl",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CREATE TABLE junk AS SELECT 42",
        "CREATE OR REPLACE VIEW ppl AS SELECT 42 AS junk",
        "SELECT 1; SELECT 2",
        "SET enable_external_access = true",
        "PRAGMA enable_profiling",
        "EXPORT DATABASE '/tmp/everything'",
        "SELEC 1",
        "",
    ]


@pytest.mark.parametrize("index", range(len(_write_statements(""))))
def test_sql_refuses_every_write_and_changes_nothing(local_warehouse, index) -> None:
    root = Path(local_warehouse.root)
    statement = _write_statements(str(root))[index]
    before = _hashes(root)
    result = CliRunner().invoke(app, ["sql", "-w", str(root), statement])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert _hashes(root) == before
    assert connect(local_warehouse).execute("SELECT count(*) FROM ppl").fetchone() == (3,)


def test_queries_of_every_read_form_are_admitted() -> None:
    for query in ("SELECT 1", "FROM ppl", "WITH x AS (SELECT 1) SELECT * FROM x", "DESCRIBE ppl", "SUMMARIZE ppl;"):
        assert check_query(query) == query


def test_the_session_reads_only_the_tables(local_warehouse, tmp_path) -> None:
    """Even a statement that gets past the query check finds the session unable to write or attach."""
    root = Path(local_warehouse.root)
    before = _hashes(root)
    session = connect(local_warehouse)
    (tmp_path / "elsewhere.csv").write_text("a\n1\n")
    for statement in (
        f"COPY (SELECT 42 AS junk) TO '{root}/junk.parquet'",
        f"ATTACH '{root}/catalog.duckdb' AS cat",
        f"SELECT * FROM read_csv('{tmp_path}/elsewhere.csv')",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
    ):
        with pytest.raises(duckdb.Error):
            session.execute(statement)
    assert session.execute("SELECT count(*) FROM edits").fetchone() == (3,)
    assert _hashes(root) == before


def test_a_url_root_is_read_only_too(tmp_path) -> None:
    with fresh_backend("memory", tmp_path) as backend:
        store = Warehouse(backend)
        _fill(store)
        store.ensure_anchors()
        fs = fsspec.filesystem("memory")
        before = {p: fs.cat_file(p) for p in fs.find(backend.path(""))}
        runner = CliRunner()
        for statement in _write_statements(store.location)[:5]:
            result = runner.invoke(app, ["sql", "-w", store.location, statement])
            assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        session = connect(store)
        with pytest.raises(duckdb.Error):
            session.execute(f"COPY (SELECT 42 AS junk) TO '{store.location}/junk.parquet'")
        assert {p: fs.cat_file(p) for p in fs.find(backend.path(""))} == before
        answered = runner.invoke(app, ["sql", "-w", store.location, "-f", "csv", "SELECT count(*) AS n FROM ppl"])
        assert answered.exit_code == 0 and answered.stdout.splitlines() == ["n", "3"], answered.output


@pytest.mark.parametrize("command", [["sql", "SELECT 1"], ["warehouse", "check"], ["analyse"]])
def test_read_commands_refuse_a_folder_that_is_not_a_warehouse(tmp_path, command) -> None:
    typo = tmp_path / "warehuose"
    result = CliRunner().invoke(app, [*command, "-w", str(typo)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert str(typo) in result.output and "editcollapse sweep -w" in result.output
    assert not typo.exists()


def test_a_moved_warehouse_still_answers(local_warehouse, tmp_path) -> None:
    moved = tmp_path / "moved"
    shutil.move(local_warehouse.root, moved)
    result = CliRunner().invoke(app, ["sql", "-w", str(moved), "-f", "csv", "SELECT count(*) AS n FROM edits"])
    assert result.exit_code == 0 and result.stdout.splitlines() == ["n", "3"], result.output


def test_json_export_is_json_with_non_finite_values_as_text(local_warehouse, tmp_path) -> None:
    query = "SELECT case_id, ppl_mean, ppl_per_text FROM ppl ORDER BY case_id"
    base = ["sql", "-w", str(local_warehouse.root), "-f", "json"]
    result = CliRunner().invoke(app, [*base, query])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == [
        {"case_id": "a", "ppl_mean": 12.5, "ppl_per_text": [12.5, "-inf"]},
        {"case_id": "b", "ppl_mean": "nan", "ppl_per_text": ["nan", "-inf"]},
        {"case_id": "c", "ppl_mean": "inf", "ppl_per_text": ["inf", "-inf"]},
    ]
    assert math.isnan(float(rows[1]["ppl_mean"])) and float(rows[2]["ppl_mean"]) == math.inf
    written = tmp_path / "out.json"
    assert CliRunner().invoke(app, [*base, "-o", str(written), query]).exit_code == 0
    assert [json.loads(line) for line in written.read_text().splitlines()] == rows
