"""Trajectory rows → rows of the warehouse's ``sequential`` table.

The step files and the table hold the same facts: the table gets its schema's columns, with the
per-matrix norms and the editor's full diagnostics as JSON text, and the ROME-family diagnostics
(``denominator`` = k·u, ``right_norm``, ``v_delta_norm``, ``target_nll`` …, the ``edits`` table's
typed diagnostic columns) as typed columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from editcollapse.warehouse.schemas import DIAGNOSTIC_COLUMNS, schema_for


def table_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``sequential`` table's columns of each trajectory row."""
    names = schema_for("sequential").names
    out = []
    for row in rows:
        record = {name: row.get(name) for name in names}
        record["norms"] = json.dumps(row.get("norms") or [])
        diagnostics = row.get("diagnostics") or {}
        for name in DIAGNOSTIC_COLUMNS:
            record[name] = diagnostics.get(name)
        record["diagnostics"] = json.dumps(diagnostics) if diagnostics else None
        out.append(record)
    return out
