"""The ``runs`` table: one row per run with its parameters, identity, package versions, git revision,
times; and the ``run_attempts`` table: one row per start of a run, with that attempt's provenance.

The run's row lives in one part (``part-run.parquet``) that is atomically rewritten as the run
progresses (``running`` at the start, ``completed``/``completed_with_errors``/``failed`` at the
end), so a run always has exactly one row; a resumed run keeps its first start time and its first
attempt's versions and git revision, and counts its attempts. Each attempt writes its own part
``part-attempt-<n>.parquet`` in ``run_attempts`` (git revision, dirty flag, versions, host, start,
end), so the rows a resumed run adds keep the provenance of the code that computed them.

A run id names one computation. Resuming it is allowed only with the same ``parameters`` and the
same ``identity`` (what else decides the numbers: the stage's resolved hyperparameters, the model
revision, digests of the inputs, the code version); otherwise :func:`start_run` refuses, naming
what differs.
"""

from __future__ import annotations

import json
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from editcollapse.core.errors import RunRefused
from editcollapse.warehouse.store import Warehouse

RUN_PART = "run"
ATTEMPTS_TABLE = "run_attempts"
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
    """The commit of the editcollapse source tree (``+dirty`` with uncommitted changes to tracked
    files), or None when the package does not run from a git checkout."""
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


def attempt_part(attempt: int) -> str:
    """The ``run_attempts`` part name of a run's ``attempt``-th start."""
    return f"attempt-{attempt:04d}"


def read_attempts(warehouse: Warehouse, model: str, method: str, run_id: str) -> list[dict[str, Any]]:
    """Every stored attempt of a run, first one first."""
    rows = warehouse.read(ATTEMPTS_TABLE, model=model, method=method, run_id=run_id).to_pylist()
    return sorted(rows, key=lambda row: row["attempt"])


def start_run(
    warehouse: Warehouse,
    *,
    model: str,
    method: str,
    run_id: str,
    stage: str,
    dataset: str | None,
    parameters: dict[str, Any],
    identity: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Record that a run (re)starts, and its attempt; a resumed run keeps its stored fields (first
    start time, first attempt's versions, baseline numbers …). A stored run with other parameters
    or another ``identity`` is refused (:class:`RunRefused`): a run id names one computation, and
    mixing two would mix their numbers in one run. A run stored before identities were recorded
    takes this one."""
    encoded = json.dumps(parameters, sort_keys=True, default=str)
    identity_json = json.dumps(identity, sort_keys=True, default=str) if identity is not None else None
    previous = read_run(warehouse, model, method, run_id)
    if previous is not None:
        _check_same_computation(previous, model, method, run_id, encoded, identity)
    revision, versions = git_revision(), json.dumps(package_versions(), sort_keys=True)
    attempt = (previous["attempts"] or 0) + 1 if previous else 1
    started = now()
    row = {
        "versions": versions,
        "git_revision": revision,
        **(previous or {}),
        "run_id": run_id,
        "stage": stage,
        "dataset": dataset,
        "parameters": encoded,
        "identity": identity_json or (previous or {}).get("identity"),
        "hostname": socket.gethostname(),
        "status": "running",
        "started_at": previous["started_at"] if previous else started,
        "finished_at": None,
        "attempts": attempt,
        **fields,
    }
    write_run(warehouse, model, method, row)
    attempt_row = {
        "run_id": run_id,
        "attempt": attempt,
        "stage": stage,
        "status": "running",
        "git_revision": revision,
        "git_dirty": None if revision is None else revision.endswith("+dirty"),
        "versions": versions,
        "hostname": row["hostname"],
        "started_at": started,
        "finished_at": None,
    }
    warehouse.write_part(
        ATTEMPTS_TABLE, [attempt_row], model=model, method=method, run_id=run_id, shard=attempt_part(attempt)
    )
    return row


def _check_same_computation(
    previous: dict[str, Any], model: str, method: str, run_id: str, parameters: str, identity: dict[str, Any] | None
) -> None:
    """Refuse to resume ``previous`` with other parameters or another identity, naming each difference."""
    differences = _differences(json.loads(previous["parameters"]), json.loads(parameters))
    stored_identity = previous.get("identity")
    if identity is not None and stored_identity is not None:
        differences += _differences(json.loads(stored_identity), json.loads(json.dumps(identity, default=str)))
    if differences:
        raise RunRefused(
            f"run {run_id!r} ({model}/{method}) exists with other parameters or inputs ({'; '.join(differences)}) — "
            "resuming it would mix two computations in one run: give a new run id (--run-id, or config.run_id "
            "in a deployment) to start a new run, or restore the inputs the run was started with"
        )


def _differences(stored: dict[str, Any], now_: dict[str, Any]) -> list[str]:
    return [
        f"{key}: stored {stored.get(key)!r}, now {now_.get(key)!r}"
        for key in sorted(set(stored) | set(now_))
        if stored.get(key) != now_.get(key)
    ]


def finish_run(
    warehouse: Warehouse, model: str, method: str, row: dict[str, Any], *, status: str, **fields: Any
) -> dict[str, Any]:
    """Record a run's end (status, end time and summary counts) on its row and its attempt's row."""
    final = {**row, **fields, "status": status, "finished_at": now()}
    write_run(warehouse, model, method, final)
    part = attempt_part(final["attempts"])
    if warehouse.has_part(ATTEMPTS_TABLE, model, method, final["run_id"], part):
        attempt = warehouse.read_part(ATTEMPTS_TABLE, model, method, final["run_id"], part).to_pylist()[0]
        attempt.update(status=status, finished_at=final["finished_at"])
        warehouse.write_part(ATTEMPTS_TABLE, [attempt], model=model, method=method, run_id=final["run_id"], shard=part)
    return final
