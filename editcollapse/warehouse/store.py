"""Atomic, idempotent Parquet parts in a hive-partitioned tree.

Layout: ``<root>/<table>/model=<m>/method=<x>/run=<id>/part-<name>.parquet``. A part is written
to a hidden ``.part-<name>.<random>.parquet.tmp`` beside its final name, flushed to disk, then
``os.replace``d into place, so a reader (or a process killed at any moment) sees either the whole
part or none of it. A part's name is a deterministic function of (run, shard): writing it again
replaces it, never duplicates it. Readers glob ``*.parquet`` only, so stray temp files of killed
writers are invisible to them.

Every table also holds one zero-row *schema anchor* part under ``model=_schema/method=_schema/
run=_schema``: it gives readers the table's columns before any data exists (DuckDB cannot bind a
view over a glob that matches nothing) and contributes no rows.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from editcollapse.paths import warehouse_dir
from editcollapse.warehouse.schemas import PARTITION_COLUMNS, schema_for

ANCHOR = "_schema"
TEMP_SUFFIX = ".parquet.tmp"
CLAIMS = "_claims"  # <root>/_claims/model=…/method=…/run=…/shard-00007.claim: who computes a shard
STALE_CLAIM_S = 1800.0  # a claim not refreshed for this long belongs to a dead worker
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def partition_value(value: str) -> str:
    """``value`` made safe as a hive partition value (path separators, ``=`` … become ``_``)."""
    if not value:
        raise ValueError("a partition value (model, method or run id) must be non-empty")
    return _UNSAFE.sub("_", value)


def part_name(shard: int | str) -> str:
    """The file name of a part: ``part-00012.parquet`` for shard 12, ``part-<name>.parquet`` otherwise."""
    label = f"{shard:05d}" if isinstance(shard, int) else partition_value(shard)
    return f"part-{label}.parquet"


def to_arrow(table: str, rows: Iterable[Mapping[str, Any]] | pa.Table) -> pa.Table:
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


class Warehouse:
    """A warehouse root: where each table's parts live, and how they are written and found."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else warehouse_dir()

    def __repr__(self) -> str:
        return f"Warehouse({str(self.root)!r})"

    # --- paths ----------------------------------------------------------------------------------

    def table_dir(self, table: str) -> Path:
        schema_for(table)
        return self.root / table

    def partition_dir(self, table: str, model: str, method: str, run_id: str) -> Path:
        """``<root>/<table>/model=<m>/method=<x>/run=<id>``."""
        values = (partition_value(model), partition_value(method), partition_value(run_id))
        return self.table_dir(table).joinpath(*(f"{k}={v}" for k, v in zip(PARTITION_COLUMNS, values)))

    def part_path(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> Path:
        return self.partition_dir(table, model, method, run_id) / part_name(shard)

    def glob(self, table: str) -> str:
        """The glob that matches every finished part of ``table`` (never temp files)."""
        return str(self.table_dir(table).resolve() / "**" / "*.parquet")

    # --- writing --------------------------------------------------------------------------------

    def write_part(self, table: str, rows: Iterable[Mapping[str, Any]] | pa.Table, *, model: str,
                   method: str, run_id: str, shard: int | str) -> Path:
        """Atomically write one part (replacing an earlier one of the same name); return its path."""
        data = to_arrow(table, rows)
        self.ensure_anchor(table)
        path = self.part_path(table, model, method, run_id, shard)
        _atomic_write(data, path)
        return path

    def ensure_anchor(self, table: str) -> Path:
        """Write ``table``'s zero-row schema part unless an identical one exists."""
        schema = schema_for(table)
        path = self.part_path(table, ANCHOR, ANCHOR, ANCHOR, "schema")
        if path.is_file():
            try:
                if pq.read_schema(path).equals(schema, check_metadata=False):
                    return path
            except (OSError, pa.ArrowInvalid):
                pass  # unreadable anchor: rewrite it below
        _atomic_write(schema.empty_table(), path)
        return path

    def ensure_anchors(self) -> None:
        """Anchor every known table (so every catalog view binds, even before any data)."""
        from editcollapse.warehouse.schemas import SCHEMAS

        for table in SCHEMAS:
            self.ensure_anchor(table)

    # --- claiming shards (several workers on one run) -------------------------------------------

    def claim_path(self, model: str, method: str, run_id: str, shard: int) -> Path:
        values = (partition_value(model), partition_value(method), partition_value(run_id))
        folder = self.root.joinpath(CLAIMS, *(f"{k}={v}" for k, v in zip(PARTITION_COLUMNS, values)))
        return folder / f"shard-{shard:05d}.claim"

    def claim(self, model: str, method: str, run_id: str, shard: int, *,
              stale_after_s: float = STALE_CLAIM_S) -> bool:
        """Take the claim on one shard (True), or find it held by a live worker (False).

        The claim file (``host pid time``) is created with ``O_CREAT | O_EXCL``, so of several
        workers exactly one wins. A claim older than ``stale_after_s``, or held by a process of
        this host that no longer exists (killed), is broken by renaming it to a unique name (one
        breaker wins the rename) and claimed afresh. The holder refreshes it
        with :meth:`touch_claim` and removes it with :meth:`release`.
        """
        path = self.claim_path(model, method, run_id, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if _create_claim(path):
                return True
            try:
                if time.time() - path.stat().st_mtime < stale_after_s and not _holder_dead(path):
                    return False
                broken = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:12]}")
                os.rename(path, broken)
                if time.time() - broken.stat().st_mtime < stale_after_s and not _holder_dead(broken):
                    # a live claim, taken meanwhile by another worker: put it back
                    with contextlib.suppress(FileExistsError):
                        os.link(broken, path)
                    broken.unlink()
                    return False
                broken.unlink()
            except FileNotFoundError:
                pass  # released or broken by another worker meanwhile: try again
        return False

    def touch_claim(self, model: str, method: str, run_id: str, shard: int) -> None:
        """Show the claim's holder is alive (its age is what makes a claim stale)."""
        self.claim_path(model, method, run_id, shard).touch()

    def release(self, model: str, method: str, run_id: str, shard: int) -> None:
        self.claim_path(model, method, run_id, shard).unlink(missing_ok=True)

    # --- finding and reading --------------------------------------------------------------------

    def has_part(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> bool:
        return self.part_path(table, model, method, run_id, shard).is_file()

    def parts(self, table: str) -> list[Path]:
        """Every finished data part of ``table`` (anchors and temp files excluded), sorted."""
        folder = self.table_dir(table)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.rglob("*.parquet") if f"model={ANCHOR}" not in p.parts)

    def read(self, table: str, *, model: str | None = None, method: str | None = None,
             run_id: str | None = None) -> pa.Table:
        """All rows of ``table`` (optionally one model/method/run) with the partition columns added."""
        wanted = {"model": model, "method": method, "run": run_id}
        pieces = []
        for path in self.parts(table):
            values = dict(segment.split("=", 1) for segment in path.parent.relative_to(
                self.table_dir(table)).parts)
            if any(v is not None and values.get(k) != partition_value(v) for k, v in wanted.items()):
                continue
            piece = pq.read_table(path, schema=schema_for(table))
            for column in PARTITION_COLUMNS:
                piece = piece.append_column(column, pa.array([values[column]] * piece.num_rows, pa.string()))
            pieces.append(piece)
        if not pieces:
            schema = schema_for(table)
            for column in PARTITION_COLUMNS:
                schema = schema.append(pa.field(column, pa.string()))
            return schema.empty_table()
        return pa.concat_tables(pieces)

    def remove_stray_temps(self, table: str, model: str, method: str, run_id: str,
                           older_than_s: float = 600.0) -> int:
        """Delete temp files of killed writers in one run's folder (only ones older than
        ``older_than_s``, so a live writer is never disturbed); return how many were removed."""
        folder = self.partition_dir(table, model, method, run_id)
        removed = 0
        if folder.is_dir():
            cutoff = time.time() - older_than_s
            for temp in folder.glob(f"*{TEMP_SUFFIX}"):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink(missing_ok=True)
                    removed += 1
        return removed


def _create_claim(path: Path) -> bool:
    """Create the claim file with its content in one step (a hard link fails if it exists), so a
    worker killed at any moment never leaves an empty claim that no one can judge."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    temp.write_text(f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n")
    try:
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    finally:
        temp.unlink()


def _holder_dead(claim: Path) -> bool:
    """Whether ``claim`` names a process of this host that is gone (a killed worker)."""
    try:
        host, pid, _ = claim.read_text().split()
        if host != socket.gethostname():
            return False  # another machine's worker: only its age tells
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False  # unreadable, half-written or not ours to signal: treat as alive
    return False


def _atomic_write(data: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name.removesuffix(".parquet")
    temp = path.with_name(f".{stem}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as handle:
            pq.write_table(data, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
