"""A trajectory's folder: one Delta and one row per step, written atomically, read back on resume.

Layout (``folder`` is ``<warehouse>/artifacts/sequential/run=<id>/<group>-trial<k>/``)::

    plan.json                   the ordered case ids this trajectory edits (checked on resume)
    step-0000.json              the unedited model's row
    step-0001.safetensors       the Delta computed at step 1 (on the model with steps < 1 applied)
    step-0001.json              the row measured after applying it
    …

A step counts as stored when its row exists (the Delta is written first, so a row never lacks its
Delta; a step whose edit failed has a row with ``error`` and no Delta). Files are written to a
``.tmp`` name and renamed, so a kill leaves either the whole file or none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from editcollapse.core.delta import Delta


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class StepStore:
    """Stored steps of one trajectory."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def delta_path(self, step: int) -> Path:
        return self.folder / f"step-{step:04d}.safetensors"

    def row_path(self, step: int) -> Path:
        return self.folder / f"step-{step:04d}.json"

    def check_plan(self, case_ids: list[str]) -> None:
        """Record the trajectory's case order, or fail if a stored one differs (a resume must match)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "plan.json"
        if path.exists():
            stored = json.loads(path.read_text())["case_ids"]
            if stored != case_ids:
                raise ValueError(
                    f"{path}: this trajectory was started with other cases "
                    f"({stored[:3]}… vs {case_ids[:3]}…); the groups changed since "
                    "(a new sweep?) — start a new run id instead of resuming"
                )
            return
        _atomic_write_bytes(path, json.dumps({"case_ids": case_ids}).encode())

    def stored_rows(self) -> list[dict[str, Any]]:
        """The rows of steps 0, 1, … up to the first missing one."""
        rows = []
        step = 0
        while self.row_path(step).exists():
            rows.append(json.loads(self.row_path(step).read_text()))
            step += 1
        return rows

    def save(self, step: int, row: dict[str, Any], delta: Delta | None) -> None:
        """Store a step: its Delta first, then its row (which marks the step as done)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if delta is not None:
            tmp = self.delta_path(step).with_name(self.delta_path(step).name + ".tmp")
            delta.save(tmp)
            os.replace(tmp, self.delta_path(step))
        _atomic_write_bytes(self.row_path(step), json.dumps(row).encode())

    def load_delta(self, step: int) -> Delta:
        path = self.delta_path(step)
        if not path.exists():
            raise FileNotFoundError(f"{path}: step {step} has a row but no stored Delta")
        return Delta.load(path)
