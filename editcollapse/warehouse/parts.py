"""The Parquet parts of a table: written whole and atomically, replaced by name, read back by partition.

A part's key is a deterministic function of (table, model, method, run, shard) (see
:mod:`.layout`), so writing it again replaces it, never duplicates it. Readers list
``*.parquet`` only, so stray temp files of killed writers are invisible to them. Every table
also holds one zero-row *schema anchor* part: it gives readers the table's columns before any
data exists (DuckDB cannot bind a view over a glob that matches nothing) and contributes no rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from editcollapse.warehouse import layout
from editcollapse.warehouse.backends import Backend
from editcollapse.warehouse.schemas import PARTITION_COLUMNS, SCHEMAS, schema_for

Rows = Iterable[Mapping[str, Any]] | pa.Table


def to_arrow(table: str, rows: Rows) -> pa.Table:
    """Rows (dicts) as an Arrow table of ``table``'s schema; unknown keys are an error naming them."""
    schema = schema_for(table)
    if isinstance(rows, pa.Table):
        unknown = set(rows.column_names) - set(schema.names)
        if unknown:
            raise ValueError(f"table {table!r} has no column(s) {sorted(unknown)}")
        for field in schema:
            if field.name not in rows.column_names:
                rows = rows.append_column(field.name, pa.nulls(rows.num_rows, field.type))
        return rows.select(schema.names).cast(schema)
    records = list(rows)
    for index, record in enumerate(records):
        unknown = set(record) - set(schema.names)
        if unknown:
            raise ValueError(f"row {index} for table {table!r} has unknown column(s) {sorted(unknown)}")
    try:
        return pa.Table.from_pylist(records, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"rows for table {table!r} do not fit its schema: {error}") from error


def parquet_bytes(data: pa.Table) -> bytes:
    """``data`` as a finished Parquet file (zstd), ready to be stored in one write."""
    sink = pa.BufferOutputStream()
    pq.write_table(data, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class PartStore:
    """Writes, finds and reads the parts of every table on one backend.

    On a URL backend a table's anchor is checked once per store (each check is a round trip);
    on a local one at every write (a check costs nothing there)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._anchored: set[str] = set()

    def write(self, table: str, rows: Rows, *, model: str, method: str, run_id: str, shard: int | str) -> str:
        """Write one part (replacing an earlier one of the same name) and its table's anchor; return its key."""
        data = to_arrow(table, rows)
        self.ensure_anchor(table)
        key = layout.part_key(table, model, method, run_id, shard)
        self.backend.write(key, parquet_bytes(data))
        return key

    def ensure_anchor(self, table: str, *, recheck: bool = False) -> str:
        """Write ``table``'s zero-row schema part unless an identical one exists; return its key.
        ``recheck`` looks again even where this store checked it already (it was just moved away)."""
        schema = schema_for(table)
        key = layout.anchor_key(table)
        if table in self._anchored and not recheck:
            return key
        if self.backend.exists(key):
            try:
                if self._read_schema(key).equals(schema, check_metadata=False):
                    self._remember_anchor(table)
                    return key
            except (OSError, pa.ArrowInvalid):
                pass  # unreadable anchor: rewrite it below
        self.backend.write(key, parquet_bytes(schema.empty_table()))
        self._remember_anchor(table)
        return key

    def ensure_anchors(self) -> None:
        """Anchor every known table (so every catalog view binds, even before any data)."""
        for table in SCHEMAS:
            self.ensure_anchor(table)

    def has(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> bool:
        return self.backend.exists(layout.part_key(table, model, method, run_id, shard))

    def read_one(
        self, table: str, model: str, method: str, run_id: str, shard: int | str, columns: list[str] | None = None
    ) -> pa.Table:
        """One part's rows (without partition columns); FileNotFoundError if it is not there."""
        return self._read(layout.part_key(table, model, method, run_id, shard), schema_for(table), columns)

    def keys(self, table: str) -> list[str]:
        """Keys of every finished data part of ``table`` (anchors and temp files excluded), in the
        order of the backend's paths."""
        found = self.backend.find(layout.table_key(table), layout.PART_SUFFIX)
        return sorted((key for key in found if not layout.is_anchor(key)), key=self.backend.path)

    def read(
        self, table: str, *, model: str | None = None, method: str | None = None, run_id: str | None = None
    ) -> pa.Table:
        """All rows of ``table`` (optionally one model/method/run) with the partition columns added."""
        wanted = {"model": model, "method": method, "run": run_id}
        schema = schema_for(table)
        pieces = []
        for key in self.keys(table):
            values = layout.partition_values(key)
            if any(v is not None and values.get(k) != layout.partition_value(v) for k, v in wanted.items()):
                continue
            piece = self._read(key, schema)
            for column in PARTITION_COLUMNS:
                piece = piece.append_column(column, pa.array([values[column]] * piece.num_rows, pa.string()))
            pieces.append(piece)
        if not pieces:
            for column in PARTITION_COLUMNS:
                schema = schema.append(pa.field(column, pa.string()))
            return schema.empty_table()
        return pa.concat_tables(pieces)

    def remove_stray_temps(self, table: str, model: str, method: str, run_id: str, older_than_s: float) -> int:
        """Delete temp files of killed writers in one run's folder (see :meth:`Backend.remove_temps`)."""
        return self.backend.remove_temps(layout.partition_key(table, model, method, run_id), older_than_s)

    def _read(self, key: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
        with self.backend.open(key) as handle:
            return pq.read_table(handle, schema=schema, columns=columns)

    def _read_schema(self, key: str) -> pa.Schema:
        with self.backend.open(key) as handle:
            return pq.read_schema(handle)

    def _remember_anchor(self, table: str) -> None:
        if self.backend.is_url:
            self._anchored.add(table)
