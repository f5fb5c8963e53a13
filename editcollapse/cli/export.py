"""Write a query's result to a file: CSV and Parquet through DuckDB, JSON lines through Python.

The result arrives as Arrow batches from the read-only warehouse session; a separate plain DuckDB
connection (which sees only the result, never the warehouse) writes CSV and Parquet. JSON is one
object a line; JSON has no number for NaN or ±infinity, so they are written as the strings
``"nan"``, ``"inf"`` and ``"-inf"`` (as in the HardCF export; ``float()`` reads them back).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa

COPY_OPTIONS = {"csv": "FORMAT csv, HEADER true", "parquet": "FORMAT parquet"}


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def write_json_lines(result: pa.RecordBatchReader, target: Path) -> None:
    with target.open("w", encoding="utf-8") as handle:
        for batch in result:
            for row in batch.to_pylist():
                handle.write(json.dumps(json_safe(row), ensure_ascii=False, allow_nan=False, default=str) + "\n")


def write_result(result: pa.RecordBatchReader, output_format: str, target: Path) -> None:
    """Write ``result`` to ``target`` as ``csv``, ``json`` (one object a line) or ``parquet``."""
    if output_format == "json":
        write_json_lines(result, target)
        return
    import duckdb

    escaped = str(target).replace("'", "''")
    with duckdb.connect() as writer:
        writer.register("result", result)
        writer.execute(f"COPY result TO '{escaped}' ({COPY_OPTIONS[output_format]})")
