"""Trajectory rows → rows of the warehouse's ``sequential`` table.

The step files keep more than the table has columns (the per-edit success list, the editor's
diagnostics, the case's single-edit perplexity); the table gets its schema's columns, with the
per-matrix norms as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from editcollapse.warehouse.schemas import schema_for


def table_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``sequential`` table's columns of each trajectory row."""
    names = schema_for("sequential").names
    out = []
    for row in rows:
        record = {name: row.get(name) for name in names}
        record["norms"] = json.dumps(row.get("norms") or [])
        out.append(record)
    return out
