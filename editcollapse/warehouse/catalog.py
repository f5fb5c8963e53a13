"""DuckDB views (and polars scans) over the warehouse's Parquet tables.

Each view is ``read_parquet('<root>/<table>/**/*.parquet', hive_partitioning=true,
union_by_name=true, hive_types=…)``: DuckDB expands the glob every time a query runs, so an open
session sees parts written after it started, and the ``*.parquet`` glob never matches a writer's
``*.parquet.tmp``. Partition columns are typed VARCHAR explicitly (a run id such as ``20261123``
must not turn into an integer). Views are made one table at a time: a table with a bad part (one
DuckDB cannot bind) gets a view of the right columns whose every query fails with a message naming
the part and ``editcollapse warehouse check --repair``; the other tables answer as usual.

:func:`connect` is a read-only session: once its views exist it may read only the tables' folders
(``enable_external_access`` off, the folders in ``allowed_directories``, extensions neither
installed nor loaded, the configuration locked), and :func:`check_query` admits one query
(``SELECT``, ``FROM``, ``WITH``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` …) and nothing else.
DuckDB has no read-only file access: ``allowed_directories`` admits writes too, so inside the
tables' folders it is :func:`check_query` (which every user statement must pass) that stops a
``COPY … TO``; outside them (other files, ``catalog.duckdb``, extensions) the session itself does.

The catalog *file* (:func:`build_catalog`) of a local root names the parts by paths relative to
the root, so a copied or moved warehouse reads its own parts: open it from the warehouse folder
(``cd <root> && duckdb -readonly catalog.duckdb``) or set ``file_search_path`` to the root first.

A URL root (``s3://…``, ``memory://…``): the session registers the root's fsspec filesystem with
DuckDB (``register_filesystem``), so the same views read the object store through fsspec; polars
scans it through a pyarrow dataset on the same filesystem. A catalog *file* of a URL root names
the parts by URL, lives in the root's local folder and needs that registration (or DuckDB's own
``httpfs`` for ``s3://``) when opened elsewhere.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

from editcollapse.warehouse import integrity, layout
from editcollapse.warehouse.schemas import PARTITION_COLUMNS, SCHEMAS
from editcollapse.warehouse.store import Warehouse

CATALOG_FILE = "catalog.duckdb"
REPAIR_HINT = "run `editcollapse warehouse check --repair` to find and quarantine bad parts"
_HIVE_TYPES = "{" + ", ".join(f"'{column}': VARCHAR" for column in PARTITION_COLUMNS) + "}"
_READ_OPTIONS = f"hive_partitioning=true, union_by_name=true, hive_types={_HIVE_TYPES}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _location(warehouse: Warehouse, key: str, relative: bool) -> str:
    """Where DuckDB finds ``key``: relative to the root (a catalog file of a local root), or absolute."""
    if relative and not warehouse.is_url:
        return key
    if warehouse.is_url:
        return str(warehouse.backend.url(key))
    return str(Path(warehouse.backend.path(key)).resolve())


def view_sql(warehouse: Warehouse, table: str, *, relative: bool = False) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement for ``table``."""
    glob = _location(warehouse, f"{layout.table_key(table)}/**/*{layout.PART_SUFFIX}", relative)
    return f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet({_quote(glob)}, {_READ_OPTIONS})"


def broken_view_sql(warehouse: Warehouse, table: str, message: str, *, relative: bool = False) -> str:
    """A view of ``table``'s columns (from its schema anchor) whose every query fails with ``message``."""
    anchor = _location(warehouse, layout.anchor_key(table), relative)
    return (
        f"CREATE OR REPLACE VIEW {table} AS SELECT anchor.* FROM range(1) "
        f"LEFT JOIN read_parquet({_quote(anchor)}, {_READ_OPTIONS}) AS anchor ON true "
        f"WHERE error({_quote(message)}) IS NULL"
    )


def bad_table_message(warehouse: Warehouse, table: str, error: Exception) -> str:
    """Why ``table`` cannot be read: its bad parts (or DuckDB's first line), and the repair command."""
    bad = integrity.check_table(warehouse.backend, table).bad
    found = "; ".join(f"{warehouse.backend.url(p.key)}: {p.reason}" for p in bad[:3])
    if len(bad) > 3:
        found += f"; and {len(bad) - 3} more"
    cause = found or str(error).splitlines()[0]
    return f"table {table} cannot be read ({cause}); {REPAIR_HINT} -w {warehouse.location}"


def create_views(connection: duckdb.DuckDBPyConnection, warehouse: Warehouse, *, relative: bool = False) -> None:
    """Define a view for every warehouse table on ``connection`` (paths relative to the root when
    ``relative``: the connection's ``file_search_path`` must then be the root)."""
    warehouse.ensure_anchors()
    if warehouse.is_url:
        register_filesystem(connection, warehouse)
    for table in SCHEMAS:
        try:
            connection.execute(view_sql(warehouse, table, relative=relative))
        except duckdb.Error as error:
            message = bad_table_message(warehouse, table, error)
            connection.execute(broken_view_sql(warehouse, table, message, relative=relative))


def register_filesystem(connection: duckdb.DuckDBPyConnection, warehouse: Warehouse) -> None:
    """Let ``connection`` read the URL root's files through its fsspec filesystem (once)."""
    protocols = warehouse.fs.protocol if isinstance(warehouse.fs.protocol, tuple) else (warehouse.fs.protocol,)
    if not set(protocols) & set(connection.list_filesystems()):
        connection.register_filesystem(warehouse.fs)


def table_folders(warehouse: Warehouse) -> list[str]:
    """Every table's folder as DuckDB names it (with a trailing ``/``): what a read-only session may read."""
    folders: list[str] = []
    for table in SCHEMAS:
        key = layout.table_key(table)
        if warehouse.is_url:  # fsspec globs come back as <protocol>://<fsspec path>, which may differ from the URL
            folders += [f"{warehouse.backend.url(key)}/", f"{warehouse.protocol}://{warehouse.backend.path(key)}/"]
        else:
            folders.append(f"{Path(warehouse.backend.path(key)).resolve()}/")
    return sorted(set(folders))


def lock_read_only(connection: duckdb.DuckDBPyConnection, warehouse: Warehouse) -> None:
    """Let ``connection`` read the tables' folders and nothing else: no other file, no ``ATTACH``,
    no extension installed or loaded, and no setting changed afterwards."""
    folders = ", ".join(_quote(folder) for folder in table_folders(warehouse))
    connection.execute(f"SET allowed_directories = [{folders}]")
    connection.execute("SET autoinstall_known_extensions = false")
    connection.execute("SET autoload_known_extensions = false")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")


def connect(warehouse: Warehouse | str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only in-memory DuckDB session with a view per table of ``warehouse`` (see the module doc)."""
    store = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    connection = duckdb.connect()
    create_views(connection, store)
    lock_read_only(connection, store)
    return connection


def check_query(sql: str) -> str:
    """``sql`` when it is exactly one query, as DuckDB parses it; otherwise a one-line ValueError.
    Anything else (``COPY``, ``ATTACH``, ``CREATE``, ``DROP``, ``INSTALL``, ``SET``, ``PRAGMA``,
    several statements …) is refused: the warehouse is read-only here."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise ValueError(f"the query does not parse: {str(error).splitlines()[0]}") from None
    if len(statements) != 1:
        raise ValueError(f"refused: {len(statements)} statements; give exactly one query")
    kind = statements[0].type
    if kind is not duckdb.StatementType.SELECT:
        raise ValueError(
            f"refused: {kind.name} is not a query; the warehouse is read-only here, only one query "
            "(SELECT, FROM, WITH, DESCRIBE, SHOW, SUMMARIZE) runs"
        )
    return sql


def build_catalog(
    warehouse: Warehouse | str | os.PathLike[str] | None = None, path: str | os.PathLike[str] | None = None
) -> Path:
    """Write a DuckDB database file holding only the views (default ``<root>/catalog.duckdb``),
    for analysts who open it with the ``duckdb`` CLI or any DuckDB client; a local root's views
    name the parts relative to the root (see the module doc). Built in a temp file and renamed,
    so a reader never finds a half-written catalog."""
    store = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    target = Path(path) if path is not None else store.local_dir / CATALOG_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        connection = duckdb.connect(str(temp))
        try:
            if not store.is_url:
                connection.execute(f"SET file_search_path = {_quote(str(Path(store.root).resolve()))}")
            create_views(connection, store, relative=True)
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
