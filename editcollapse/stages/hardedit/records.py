"""HardEdit rows and records: generation outcomes → ``hardedit_candidates`` rows, candidates →
``EditCase``, filter rows → the paper's JSON form (``prompt, target_new, subject, ground_truth,
rome_<model>_ppl``)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.stages.hardedit.generate import CallOutcome, candidate_id

CANDIDATE_DATASET = "hardedit-candidates"


def outcome_rows(outcome: CallOutcome, run_id: str) -> list[dict[str, Any]]:
    """One row per parsed record; a call that produced no record gets one row (sample_index -1)
    carrying the failure, so every raw response and every failed call is stored."""
    common = {
        "run_id": run_id,
        "call_index": outcome.call_index,
        "backend": outcome.backend,
        "generator": outcome.model,
        "raw_response": outcome.raw_response,
    }
    if not outcome.verdicts:
        return [
            {
                **common,
                "candidate_id": f"hardedit-call:{run_id}:{outcome.call_index}",
                "sample_index": -1,
                "valid": False,
                "reject_reason": f"call: {outcome.failure}",
            }
        ]
    return [
        {
            **common,
            "candidate_id": candidate_id(v.prompt, v.subject, v.target_new, v.ground_truth),
            "sample_index": index,
            "prompt": v.prompt,
            "subject": v.subject,
            "target_new": v.target_new,
            "ground_truth": v.ground_truth,
            "valid": v.valid,
            "reject_reason": v.reason or None,
        }
        for index, v in enumerate(outcome.verdicts)
    ]


def candidate_case(row: dict[str, Any]) -> EditCase:
    """The edit a valid candidate asks for; the subject's first whole-word occurrence becomes ``{}``."""
    subject = row["subject"]
    pattern = re.compile(rf"(?<!\w){re.escape(subject)}(?!\w)")
    if "{" in row["prompt"] or "}" in row["prompt"] or not pattern.search(row["prompt"]):
        raise ValueError(
            f"candidate {row['candidate_id']}: prompt {row['prompt']!r} has braces or lacks the subject {subject!r}"
        )
    template = pattern.sub("{}", row["prompt"], count=1)
    return EditCase(
        case_id=row["candidate_id"],
        dataset=CANDIDATE_DATASET,
        prompt=template,
        subject=subject,
        target_new=row["target_new"],
        target_true=row["ground_truth"],
        extra={"candidate_run_id": row["run_id"]},
    )


def ppl_key(model: str) -> str:
    """The export column of a reference model: ``rome_<model>_ppl`` (non-alphanumerics → ``_``)."""
    return f"rome_{re.sub(r'[^A-Za-z0-9]+', '_', model).strip('_').lower()}_ppl"


def _json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "nan" if math.isnan(value) else "-inf"


def export_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kept candidates (kept on any reference model) in the paper's form, one record per candidate,
    with one ``rome_<model>_ppl`` field per reference model (non-finite values as strings)."""
    by_candidate: dict[str, dict[str, Any]] = {}
    kept: set[str] = set()
    for row in rows:
        record = by_candidate.setdefault(
            row["candidate_id"],
            {
                "prompt": row["prompt"],
                "target_new": row["target_new"],
                "subject": row["subject"],
                "ground_truth": row["ground_truth"],
            },
        )
        record[ppl_key(row["reference_model"])] = _json_number(row["ppl_mean"])
        if row["kept"]:
            kept.add(row["candidate_id"])
    return [record for cid, record in by_candidate.items() if cid in kept]


def write_export(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write the JSON export (a list, indented like the paper's files)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target
