"""DuckDB views (and polars scans) over the warehouse's Parquet tables.

Each view is ``read_parquet('<root>/<table>/**/*.parquet', hive_partitioning=true,
union_by_name=true, hive_types=…)``: DuckDB expands the glob every time a query runs, so an open
session sees parts written after it started, and the ``*.parquet`` glob never matches a writer's
``*.parquet.tmp``. Partition columns are typed VARCHAR explicitly (a run id such as ``20261123``
must not turn into an integer). Paths are absolute, so a catalog file works from any directory.

A URL root (``s3://…``, ``memory://…``): the session registers the root's fsspec filesystem with
DuckDB (``register_filesystem``), so the same views read the object store through fsspec; polars
scans it through a pyarrow dataset on the same filesystem. A catalog *file* of a URL root lives
in the root's local folder and needs that registration (or DuckDB's own ``httpfs`` for ``s3://``)
when opened elsewhere.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

from editcollapse.warehouse.schemas import PARTITION_COLUMNS, SCHEMAS
from editcollapse.warehouse.store import Warehouse

CATALOG_FILE = "catalog.duckdb"
_HIVE_TYPES = "{" + ", ".join(f"'{column}': VARCHAR" for column in PARTITION_COLUMNS) + "}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sql(warehouse: Warehouse, table: str) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement for ``table``."""
    return (
        f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet({_quote(warehouse.glob(table))}, "
        f"hive_partitioning=true, union_by_name=true, hive_types={_HIVE_TYPES})"
    )


def create_views(connection: duckdb.DuckDBPyConnection, warehouse: Warehouse) -> None:
    """Define a view for every warehouse table on ``connection``."""
    warehouse.ensure_anchors()
    if warehouse.is_url:
        register_filesystem(connection, warehouse)
    for table in SCHEMAS:
        connection.execute(view_sql(warehouse, table))


def register_filesystem(connection: duckdb.DuckDBPyConnection, warehouse: Warehouse) -> None:
    """Let ``connection`` read the URL root's files through its fsspec filesystem (once)."""
    protocols = warehouse.fs.protocol if isinstance(warehouse.fs.protocol, tuple) else (warehouse.fs.protocol,)
    if not set(protocols) & set(connection.list_filesystems()):
        connection.register_filesystem(warehouse.fs)


def connect(warehouse: Warehouse | str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session with a view per table of ``warehouse``."""
    store = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    connection = duckdb.connect()
    create_views(connection, store)
    return connection


def build_catalog(
    warehouse: Warehouse | str | os.PathLike[str] | None = None, path: str | os.PathLike[str] | None = None
) -> Path:
    """Write a DuckDB database file holding only the views (default ``<root>/catalog.duckdb``),
    for analysts who open it with the ``duckdb`` CLI or any DuckDB client. Built in a temp file
    and renamed, so a reader never finds a half-written catalog."""
    store = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    target = Path(path) if path is not None else store.local_dir / CATALOG_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        connection = duckdb.connect(str(temp))
        try:
            create_views(connection, store)
            connection.execute("CHECKPOINT")
        finally:
            connection.close()
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
        Path(f"{temp}.wal").unlink(missing_ok=True)
    return target


def scan(table: str, warehouse: Warehouse | str | os.PathLike[str] | None = None):
    """A polars ``LazyFrame`` over ``table`` (same files, same partition columns as the views)."""
    import polars as pl

    store = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    store.ensure_anchor(table)
    if not store.is_url:
        return pl.scan_parquet(
            store.glob(table), hive_partitioning=True, hive_schema={column: pl.String for column in PARTITION_COLUMNS}
        )
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    from editcollapse.warehouse.schemas import schema_for

    partitioning = ds.partitioning(pa.schema([(c, pa.string()) for c in PARTITION_COLUMNS]), flavor="hive")
    files = [*store.parts(table), str(store.ensure_anchor(table))]
    dataset = ds.dataset(
        files,
        schema=schema_for(table)
        .append(pa.field("model", pa.string()))
        .append(pa.field("method", pa.string()))
        .append(pa.field("run", pa.string())),
        format="parquet",
        filesystem=PyFileSystem(FSSpecHandler(store.fs)),
        partitioning=partitioning,
        partition_base_dir=str(store.table_dir(table)),
    )
    return pl.scan_pyarrow_dataset(dataset)
