"""Which edited models to evaluate downstream, and how to rebuild each one's weight change.

An :class:`EditRef` names one edited model: the stored Deltas to apply (sequential trajectories
keep theirs), or the case to re-edit (single-edit sweeps discard their Deltas; the edit is re-run
with the sweep's per-case seed, so it is the same edit — the flow checks this by comparing its
own perplexity with the one the sweep recorded). Selections read warehouse tables; the pure
functions below take their rows as dicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from editcollapse.core.case import EditCase

BASELINE = "baseline"
SELECTIONS = ("none", "extremes", "hardcf", "hardedit", "sequential")


@dataclass(frozen=True)
class EditRef:
    """One model to evaluate: the unedited baseline, a re-run single edit, or stored Deltas."""

    ref: str  # "baseline", the case id, or "<run>/<group>-trial<k>@<step>"
    source_table: str  # "baseline" | "ppl" (sweep extremes) | "hardcf" | "hardedit" | "sequential" | "cases"
    case: EditCase | None = None  # re-edit this case (when no Deltas are stored)
    delta_paths: tuple[str, ...] = ()  # stored Deltas, applied in order
    recorded_ppl: float = math.nan  # the perplexity the source table recorded for this edit
    seed: int = 0  # the sweep's seed (the edit's torch seed derives from it and the case id)

    @property
    def is_baseline(self) -> bool:
        return self.source_table == BASELINE


BASELINE_REF = EditRef(BASELINE, BASELINE)


def case_from_columns(
    case_id: str, dataset: str, prompt: str, subject: str, target_new: str, target_true: str | None
) -> EditCase:
    """An EditCase from flat columns; a filled prompt gets ``{}`` where its subject first occurs."""
    if "{}" not in prompt:
        if subject not in prompt:
            raise ValueError(f"case {case_id}: subject {subject!r} does not occur in prompt {prompt!r}")
        prompt = prompt.replace(subject, "{}", 1)
    return EditCase(
        case_id=case_id, dataset=dataset, prompt=prompt, subject=subject, target_new=target_new, target_true=target_true
    )


def case_from_row(row: Mapping[str, Any]) -> EditCase:
    """An EditCase from a ``cases`` table row (the ``extra`` column is JSON)."""
    record = dict(row)
    record["extra"] = json.loads(record.get("extra") or "{}")
    return EditCase.from_dict(record)


def extremes(
    ppl_rows: Iterable[Mapping[str, Any]], cases: Mapping[str, EditCase], k: int, seed: int = 0
) -> list[EditRef]:
    """The ``k`` most and ``k`` least damaging single edits (highest / lowest recorded ME-PPL).

    NaN perplexities (edits whose model could not be scored) rank as most damaging.
    """
    rows = [row for row in ppl_rows if row["case_id"] in cases]
    rows.sort(key=lambda row: (_rank_ppl(row["ppl_mean"]), row["case_id"]), reverse=True)
    chosen = rows[:k] + [row for row in rows[::-1][:k] if row not in rows[:k]]
    return [
        EditRef(row["case_id"], "ppl", case=cases[row["case_id"]], recorded_ppl=row["ppl_mean"], seed=seed)
        for row in chosen
    ]


def from_hardcf(
    rows: Iterable[Mapping[str, Any]],
    model: str,
    limit: int,
    cases: Mapping[str, EditCase] | None = None,
    seed: int = 0,
) -> list[EditRef]:
    """HardCF cases that collapsed ``model``, highest perplexity first (one per case)."""
    mine = [row for row in rows if row.get("source_model") == model and row.get("collapsed")]
    mine.sort(key=lambda row: _rank_ppl(row["ppl_mean"]), reverse=True)
    refs: dict[str, EditRef] = {}
    for row in mine:
        if row["case_id"] in refs:
            continue
        case = (cases or {}).get(row["case_id"]) or case_from_columns(
            row["case_id"],
            row.get("dataset") or "hardcf",
            row["prompt"],
            row["subject"],
            row["target_new"],
            row.get("target_true"),
        )
        refs[row["case_id"]] = EditRef(row["case_id"], "hardcf", case=case, recorded_ppl=row["ppl_mean"], seed=seed)
    return list(refs.values())[:limit]


def from_hardedit(rows: Iterable[Mapping[str, Any]], limit: int, seed: int = 0) -> list[EditRef]:
    """Kept HardEdit cases, highest reference perplexity first."""
    kept = [row for row in rows if row.get("kept")]
    kept.sort(key=lambda row: _rank_ppl(row["ppl_mean"]), reverse=True)
    refs = []
    for row in kept[:limit]:
        case_id = f"hardedit:{row['candidate_id']}"
        case = case_from_columns(
            case_id, "hardedit", row["prompt"], row["subject"], row["target_new"], row.get("ground_truth")
        )
        refs.append(EditRef(case_id, "hardedit", case=case, recorded_ppl=row["ppl_mean"], seed=seed))
    return refs


def from_sequential(rows: Iterable[Mapping[str, Any]], delta_path: Any, limit: int) -> list[EditRef]:
    """The last stored step of each trajectory (group, trial), highest perplexity first.

    ``delta_path(run, group, trial, step) -> Path`` locates a stored step's Delta; the model of
    step s is the original with the Deltas of steps 1..s applied in order.
    """
    last: dict[tuple[str, str, int], Mapping[str, Any]] = {}
    for row in rows:
        if row.get("error") or row["step"] < 1:
            continue
        key = (row["run_id"], row["group"], row["trial"])
        if key not in last or row["step"] > last[key]["step"]:
            last[key] = row
    chosen = sorted(last.values(), key=lambda row: _rank_ppl(row["ppl_mean"]), reverse=True)[:limit]
    return [
        EditRef(
            f"{row['run_id']}/{row['group']}-trial{row['trial']:03d}@{row['step']}",
            "sequential",
            delta_paths=tuple(
                str(delta_path(row["run_id"], row["group"], row["trial"], s)) for s in range(1, row["step"] + 1)
            ),
            recorded_ppl=_float(row["ppl_mean"]),
        )
        for row in chosen
    ]


def by_case_ids(case_ids: Sequence[str], cases: Mapping[str, EditCase], seed: int = 0) -> list[EditRef]:
    """Named cases, in the order given; an unknown id is an error listing it."""
    missing = [case_id for case_id in case_ids if case_id not in cases]
    if missing:
        raise KeyError(f"case id(s) not found: {missing}")
    return [EditRef(case_id, "cases", case=cases[case_id], seed=seed) for case_id in case_ids]


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _rank_ppl(value: Any) -> float:
    """Sort key: NaN (unscorable model) counts as the most damaging."""
    number = _float(value)
    return math.inf if math.isnan(number) else number


def select_edits(
    warehouse: Any,
    *,
    model: str,
    method: str,
    edits: str,
    k: int = 2,
    max_edits: int = 10,
    source_run: str | None = None,
    seed: int = 0,
) -> list[EditRef]:
    """The edited models named by ``edits``, read from ``warehouse`` (a :class:`Warehouse`).

    ``edits``: ``none`` (baseline only), ``extremes`` (the ``k`` most and ``k`` least damaging
    edits of a single-edit sweep), ``hardcf``, ``hardedit``, ``sequential`` (at most ``max_edits``
    each, most damaging first), or comma-separated case ids of a sweep's ``cases`` table.
    ``source_run`` picks the sweep (default: the one of ``model``/``method`` with the most rows).
    """
    if edits == "none":
        return []
    if edits == "hardedit":
        return from_hardedit(_rows(warehouse, "hardedit"), max_edits, seed=seed)
    if edits == "sequential":
        from editcollapse.stages.sequential.store import StepStore

        def delta_path(run: str, group: str, trial: int, step: int) -> Any:
            folder = warehouse.partition_dir("sequential", model, method, run) / "deltas"
            return StepStore(folder / f"{group}-trial{trial:03d}").delta_path(step)

        rows = _rows(warehouse, "sequential", model=model, method=method, run_id=source_run)
        return from_sequential(rows, delta_path, max_edits)
    if edits == "hardcf":
        rows = _rows(warehouse, "hardcf")
        cases = {row["case_id"]: case_from_row(row) for row in _rows(warehouse, "cases", model=model, method=method)}
        return from_hardcf(
            rows, model, max_edits, cases=cases, seed=_sweep_seed(warehouse, model, method, source_run, seed)
        )
    run = source_run or _largest_sweep(warehouse, model, method)
    cases = {
        row["case_id"]: case_from_row(row) for row in _rows(warehouse, "cases", model=model, method=method, run_id=run)
    }
    sweep_seed = _sweep_seed(warehouse, model, method, run, seed)
    if edits == "extremes":
        ppl_rows = _rows(warehouse, "ppl", model=model, method=method, run_id=run)
        return extremes(ppl_rows, cases, k, seed=sweep_seed)
    return by_case_ids([part.strip() for part in edits.split(",") if part.strip()], cases, seed=sweep_seed)


def _rows(warehouse: Any, table: str, **where: str | None) -> list[dict[str, Any]]:
    return warehouse.read(table, **where).to_pylist()


def _largest_sweep(warehouse: Any, model: str, method: str) -> str:
    """The sweep run of ``model``/``method`` with the most ``ppl`` rows (an error when there is none)."""
    counts: dict[str, int] = {}
    for row in _rows(warehouse, "ppl", model=model, method=method):
        counts[row["run_id"]] = counts.get(row["run_id"], 0) + 1
    if not counts:
        raise LookupError(
            f"no single-edit sweep of {model}/{method} in {warehouse.root}: run "
            "`editcollapse sweep` first, or name edits by source (hardcf, sequential …)"
        )
    return max(counts, key=lambda run: (counts[run], run))


def _sweep_seed(warehouse: Any, model: str, method: str, run: str | None, default: int) -> int:
    """The seed a sweep ran with (its edits' torch seeds derive from it), from its ``runs`` row."""
    for row in _rows(warehouse, "runs", model=model, method=method, run_id=run):
        if row.get("stage") in (None, "single_edit_sweep") and row.get("parameters"):
            return int(json.loads(row["parameters"]).get("seed", default))
    return default
