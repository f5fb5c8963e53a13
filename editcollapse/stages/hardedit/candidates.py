"""HardEdit candidates in the warehouse: the subjects already generated, the valid candidates to
filter, and the filter's keep rule (the edited model collapsed: :func:`editcollapse.core.collapse.is_collapsed`)."""

from __future__ import annotations

from typing import Any

from editcollapse.core.collapse import is_collapsed
from editcollapse.warehouse.store import Warehouse


def valid_subjects(warehouse: Warehouse, run_id: str | None = None) -> list[str]:
    """Valid subjects already in ``hardedit_candidates`` (one run's, or every run's), in order."""
    rows = warehouse.read("hardedit_candidates", run_id=run_id).to_pylist()
    rows.sort(key=lambda r: (r["run_id"], r["call_index"], r["sample_index"]))
    return [r["subject"] for r in rows if r["valid"]]


def load_candidates(
    warehouse: Warehouse, candidate_run_ids: list[str] | None, limit: int | None
) -> list[dict[str, Any]]:
    """Valid candidates (each id once, in generation order), from the given runs or all runs."""
    rows = [
        r
        for r in warehouse.read("hardedit_candidates").to_pylist()
        if r["valid"] and (not candidate_run_ids or r["run_id"] in candidate_run_ids)
    ]
    rows.sort(key=lambda r: (r["run_id"], r["call_index"], r["sample_index"]))
    unique = list({r["candidate_id"]: r for r in reversed(rows)}.values())[::-1]
    return unique[:limit] if limit is not None else unique


def filter_rows(
    candidates: list[dict[str, Any]],
    ppl_rows: list[dict[str, Any]],
    edit_rows: list[dict[str, Any]],
    *,
    run_id: str,
    reference_model: str,
    threshold: float,
) -> list[dict[str, Any]]:
    """``hardedit`` rows: each candidate with its post-edit ME-PPL on one model and whether it is kept
    (it collapsed the model, as in the sweep's ``collapsed``; a candidate never measured is not kept)."""
    ppl = {r["case_id"]: r["ppl_mean"] for r in ppl_rows}
    errors = {r["case_id"]: r.get("error") for r in edit_rows if r.get("status") != "ok"}
    rows = []
    for candidate in candidates:
        cid = candidate["candidate_id"]
        value = ppl.get(cid)
        rows.append(
            {
                "run_id": run_id,
                "candidate_id": cid,
                "candidate_run_id": candidate["run_id"],
                "prompt": candidate["prompt"],
                "subject": candidate["subject"],
                "target_new": candidate["target_new"],
                "ground_truth": candidate["ground_truth"],
                "reference_model": reference_model,
                "ppl_mean": value,
                "kept": value is not None and is_collapsed(value, threshold),
                "threshold": threshold,
                "error": errors.get(cid) or (None if value is not None else "no perplexity measured"),
            }
        )
    return rows
