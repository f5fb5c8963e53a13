"""HardCF: the cases whose single edit collapsed at least one model, with every model's perplexity.

Read from the ``ppl`` and ``cases`` rows of single-edit sweeps (``runs.stage =
'single_edit_sweep'``). Collapse is re-decided here with the given threshold (``ppl_mean >
threshold``, or not finite), so one sweep serves any threshold. A selected case gets one
``hardcf`` row per sweep that measured it (collapsed or not): the per-model perplexities.
The selection's id is a digest of its threshold, filters and source runs, so selecting again
over the same sweeps replaces its rows instead of adding to them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, is_collapsed
from editcollapse.stages.hardcf.config import HardCFConfig
from editcollapse.stages.result import StageResult, bulky
from editcollapse.warehouse.catalog import connect
from editcollapse.warehouse.store import Warehouse

_SOURCE_ROWS = """
SELECT p.case_id, c.dataset, c.prompt, c.subject, c.target_new, c.target_true,
       p.run_id AS source_run_id, p.model AS source_model, p.method AS source_method, p.ppl_mean
FROM ppl p
JOIN cases c ON c.run_id = p.run_id AND c.case_id = p.case_id AND c.model = p.model AND c.method = p.method
JOIN runs r ON r.run = p.run AND r.model = p.model AND r.method = p.method
WHERE r.stage = 'single_edit_sweep' AND p.method = ?
"""


def source_rows(
    warehouse: Warehouse,
    *,
    method: str = "rome",
    models: Sequence[str] | None = None,
    run_ids: Sequence[str] | None = None,
    dataset: str | None = None,
) -> list[dict[str, Any]]:
    """Every (case, sweep) perplexity row the selection may draw on."""
    query, args = _SOURCE_ROWS, [method]
    if models:
        query += f" AND p.model IN ({', '.join('?' * len(models))})"
        args += list(models)
    if run_ids:
        query += f" AND p.run_id IN ({', '.join('?' * len(run_ids))})"
        args += list(run_ids)
    if dataset:
        query += " AND c.dataset = ?"
        args.append(dataset)
    session = connect(warehouse)
    cursor = session.execute(query + " ORDER BY p.case_id, p.model, p.run_id", args)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def select_hardcf_rows(rows: list[dict[str, Any]], threshold: float = COLLAPSE_THRESHOLD) -> list[dict[str, Any]]:
    """The rows of cases that collapsed on any model, each marked with its own collapse."""
    hard = {row["case_id"] for row in rows if is_collapsed(row["ppl_mean"], threshold)}
    return [
        {**row, "collapsed": is_collapsed(row["ppl_mean"], threshold), "threshold": threshold}
        for row in rows
        if row["case_id"] in hard
    ]


def selection_id(threshold: float, method: str, dataset: str | None, source_runs: Sequence[str]) -> str:
    """``hardcf-<12 hex>`` from what determines the selection."""
    key = json.dumps(
        {"threshold": threshold, "method": method, "dataset": dataset, "sources": sorted(set(source_runs))},
        sort_keys=True,
    )
    return f"hardcf-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def store_hardcf(warehouse: Warehouse, rows: list[dict[str, Any]], run_id: str) -> int:
    """Write the selection: one part per source sweep, under that sweep's model and method."""
    by_source: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_source.setdefault((row["source_model"], row["source_method"], row["source_run_id"]), []).append(
            {**row, "run_id": run_id}
        )
    for (model, method, source_run), part in by_source.items():
        warehouse.write_part("hardcf", part, model=model, method=method, run_id=run_id, shard=source_run)
    return len(by_source)


def export_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The selection in the paper's HardCF/HardEdit field form, one record per case:
    ``prompt`` (subject filled in), ``target_new``, ``subject``, ``ground_truth`` and one
    ``<method>_<model>_ppl`` per model (the highest if a model was swept more than once).
    Non-finite perplexities are written as the strings ``"inf"``/``"nan"`` (JSON has no number
    for them; ``float()`` reads them back)."""
    records: dict[str, dict[str, Any]] = {}
    for row in rows:
        record = records.setdefault(
            row["case_id"],
            {
                "case_id": row["case_id"],
                "prompt": row["prompt"].replace("{}", row["subject"]),
                "target_new": row["target_new"],
                "subject": row["subject"],
                "ground_truth": row["target_true"],
            },
        )
        field = f"{row['source_method']}_{row['source_model']}_ppl"
        value = row["ppl_mean"]
        previous = record.get(field)
        if previous is None or _rank(value) > _rank(float(previous)):
            record[field] = value if math.isfinite(value) else str(value)
    return list(records.values())


def _rank(value: float) -> float:
    return math.inf if math.isnan(value) else value


def write_json(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write records as a JSON list (atomically)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    temp.replace(target)
    return target


SELECTION_MODEL = "all-models"  # the runs row of a selection spans models


@dataclass(frozen=True)
class HardCFResult(StageResult):
    """A stored selection: its id, size, per-model counts, sources and JSON export."""

    run_id: str
    n_hard_cases: int
    per_model: dict[str, dict[str, int]]  # model → {"swept": n, "collapsed": n}
    source_runs: tuple[str, ...]
    export: str
    records: tuple[dict[str, Any], ...] = bulky()

    def headline(self) -> str:
        return f"{self.n_hard_cases} hard cases from {len(self.source_runs)} sweep(s) → {self.export}"


def run_selection(config: HardCFConfig, warehouse: Warehouse) -> HardCFResult:
    """Select HardCF from the stored sweeps, store it (``hardcf`` rows and a ``runs`` row) and
    export the JSON."""
    from editcollapse.warehouse.runs import finish_run, start_run

    threshold, method, dataset = config.threshold, config.method, config.dataset
    models, run_ids = list(config.models) or None, list(config.runs) or None
    rows = source_rows(warehouse, method=method, models=models, run_ids=run_ids, dataset=dataset)
    if not rows:
        raise ValueError(
            f"no single-edit sweep rows for method {method!r} (models={models}, runs={run_ids}, "
            f"dataset={dataset}) in {warehouse.root}: run `editcollapse sweep` first"
        )
    sources = sorted({row["source_run_id"] for row in rows})
    run_id = selection_id(threshold, method, dataset, sources)
    parameters = {
        "threshold": threshold,
        "method": method,
        "models": sorted(models or []),
        "runs": sources,
        "dataset": dataset,
    }
    run_row = start_run(
        warehouse,
        model=SELECTION_MODEL,
        method=method,
        run_id=run_id,
        stage="hardcf",
        dataset=dataset,
        parameters=parameters,
        threshold=threshold,
    )
    selected = select_hardcf_rows(rows, threshold)
    store_hardcf(warehouse, selected, run_id)
    records = export_records(selected)
    path = write_json(records, config.output or warehouse.local_dir / "exports" / f"{run_id}.json")
    per_model: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = per_model.setdefault(row["source_model"], {"swept": 0, "collapsed": 0})
        counts["swept"] += 1
        counts["collapsed"] += is_collapsed(row["ppl_mean"], threshold)
    finish_run(
        warehouse, SELECTION_MODEL, method, run_row, status="completed", n_cases=len(records), n_collapsed=len(records)
    )
    return HardCFResult(
        run_id=run_id,
        n_hard_cases=len(records),
        per_model=per_model,
        source_runs=tuple(sources),
        export=str(path),
        records=tuple(records),
    )
