"""The ``runs`` table: one row per run with its parameters, package versions, git revision, times.

The row lives in one part (``part-run.parquet``) that is atomically rewritten as the run
progresses (``running`` at the start, ``completed``/``failed`` at the end), so a run always has
exactly one row; a resumed run keeps its first start time and counts its attempts.
"""

from __future__ import annotations

import json
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from editcollapse.warehouse.store import Warehouse

RUN_PART = "run"
VERSIONED_PACKAGES = ("editcollapse", "torch", "transformers", "prefect", "pyarrow", "duckdb", "numpy")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's numbers."""
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_revision() -> str | None:
    """The commit of the editcollapse source tree (``+dirty`` with uncommitted changes), or None
    when the package does not run from a git checkout."""
    source = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def now() -> datetime:
    return datetime.now(UTC)


def read_run(warehouse: Warehouse, model: str, method: str, run_id: str) -> dict[str, Any] | None:
    """The stored ``runs`` row of a run, or None."""
    if not warehouse.has_part("runs", model, method, run_id, RUN_PART):
        return None
    rows = warehouse.read_part("runs", model, method, run_id, RUN_PART).to_pylist()
    return rows[0] if rows else None


def write_run(warehouse: Warehouse, model: str, method: str, row: dict[str, Any]) -> Path | str:
    """(Re)write a run's single row."""
    return warehouse.write_part("runs", [row], model=model, method=method, run_id=row["run_id"], shard=RUN_PART)


def start_run(
    warehouse: Warehouse,
    *,
    model: str,
    method: str,
    run_id: str,
    stage: str,
    dataset: str | None,
    parameters: dict[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    """Record that a run (re)starts; a resumed run keeps its stored fields (first start time,
    baseline numbers …). A stored run with other parameters is an error: a run id names one
    computation, and mixing two would corrupt resume."""
    encoded = json.dumps(parameters, sort_keys=True, default=str)
    previous = read_run(warehouse, model, method, run_id)
    if previous is not None and previous["parameters"] != encoded:
        raise ValueError(
            f"run {run_id!r} ({model}/{method}) exists with other parameters:\n  stored: "
            f"{previous['parameters']}\n  now:    {encoded}\nuse another run id for a new run"
        )
    row = {
        **(previous or {}),
        "run_id": run_id,
        "stage": stage,
        "dataset": dataset,
        "parameters": encoded,
        "versions": json.dumps(package_versions(), sort_keys=True),
        "git_revision": git_revision(),
        "hostname": socket.gethostname(),
        "status": "running",
        "started_at": previous["started_at"] if previous else now(),
        "finished_at": None,
        "attempts": (previous["attempts"] or 0) + 1 if previous else 1,
        **fields,
    }
    write_run(warehouse, model, method, row)
    return row


def finish_run(
    warehouse: Warehouse, model: str, method: str, row: dict[str, Any], *, status: str, **fields: Any
) -> dict[str, Any]:
    """Record a run's end (status, end time and summary counts)."""
    final = {**row, **fields, "status": status, "finished_at": now()}
    write_run(warehouse, model, method, final)
    return final
