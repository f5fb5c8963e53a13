"""Whether the parts of a table can be trusted, and moving the ones that cannot out of the way.

A part is *sound* when it sits where the layout puts it (``<table>/model=…/method=…/run=…/part-….parquet``),
its Parquet footer reads, and its columns are the table's (:mod:`.schemas`; a part written before a
column was added may lack that column, never hold another type or a partition column). A *bad* part
is moved to ``_quarantine/<stamp>/<its key>`` — inside the warehouse, outside every table's folder,
so no view reads it and the stage that owns it sees it missing and writes it again. A sweep shard
whose ``edits`` part (its completion mark, written last) is missing is *incomplete*: its other parts
are left alone (its worker may still be writing them) and are replaced when the shard is recomputed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from editcollapse.warehouse import layout
from editcollapse.warehouse.backends import Backend
from editcollapse.warehouse.schemas import PARTITION_COLUMNS, schema_for

COMPLETION_MARKS = {"cases": "edits", "edit_metrics": "edits", "ppl": "edits"}
"""Tables written per sweep shard before the shard's ``edits`` part, which marks it complete."""


@dataclass(frozen=True)
class PartProblem:
    table: str
    key: str
    reason: str


@dataclass
class TableReport:
    """One table's verdict: how many data parts it holds (its schema anchor not counted), which parts
    are bad (the anchor included), which belong to incomplete shards."""

    table: str
    n_parts: int = 0
    bad: list[PartProblem] = field(default_factory=list)
    incomplete: list[PartProblem] = field(default_factory=list)


def part_problem(backend: Backend, table: str, key: str) -> str | None:
    """Why the part at ``key`` cannot be trusted as a part of ``table`` (None when it is sound)."""
    misplaced = layout.layout_problem(table, key)
    if misplaced is not None:
        return misplaced
    try:
        with backend.open(key) as handle:
            found = pq.ParquetFile(handle).schema_arrow
    except FileNotFoundError:
        return "missing"
    except (OSError, pa.ArrowException) as error:
        return f"unreadable Parquet ({str(error).splitlines()[0]})"
    return schema_problem(table, found)


def schema_problem(table: str, found: pa.Schema) -> str | None:
    """Why columns ``found`` in a part do not fit ``table``'s schema (None when they fit)."""
    expected = schema_for(table)
    for column in found:
        if column.name in PARTITION_COLUMNS:
            return f"holds partition column {column.name!r} (it belongs in the path)"
        if column.name not in expected.names:
            return f"has column {column.name!r}, which table {table!r} does not"
        wanted = expected.field(column.name).type
        if not column.type.equals(wanted):
            return f"column {column.name!r} is {column.type}, the schema says {wanted}"
    missing = [f.name for f in expected if not f.nullable and f.name not in found.names]
    if missing:
        return f"lacks required column(s) {missing}"
    return None


def check_table(backend: Backend, table: str) -> TableReport:
    """Verify every ``*.parquet`` file under ``table``'s folder (anchors included)."""
    keys = sorted(backend.find(layout.table_key(table), layout.PART_SUFFIX))
    report = TableReport(table, n_parts=sum(not layout.is_anchor(key) for key in keys))
    for key in keys:
        reason = part_problem(backend, table, key)
        if reason is not None:
            report.bad.append(PartProblem(table, key, reason))
    mark_table = COMPLETION_MARKS.get(table)
    if mark_table is not None:
        marks = set(backend.find(layout.table_key(mark_table), layout.PART_SUFFIX))
        flagged = {problem.key for problem in report.bad}
        for key in keys:
            mark = "/".join([mark_table, *key.split("/")[1:]])
            if key not in flagged and not layout.is_anchor(key) and mark not in marks:
                report.incomplete.append(PartProblem(table, key, f"its shard has no {mark_table} part (unfinished)"))
    return report


def quarantine_stamp() -> str:
    """A fresh folder name under ``_quarantine``: UTC time and a random suffix."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def quarantine(backend: Backend, key: str, stamp: str | None = None) -> str:
    """Move the part at ``key`` into the quarantine folder; return its new key."""
    target = layout.quarantine_key(key, stamp or quarantine_stamp())
    backend.move(key, target)
    return target
