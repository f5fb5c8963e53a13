"""Run one sequential-editing trajectory: edit, measure, store; repeat until collapse or the end.

Each edit is computed on the model that already carries every earlier edit (ROME/MEMIT/FT
re-edit the edited model), so the cumulative change is the sum of the per-step Deltas. After a
step (every ``ppl_every`` steps, and always at the last one) the runner records the perplexity on
the corpus, the success of the newest edit and of every earlier one, and — at every step — the
Frobenius and spectral norms of the step's and the cumulative change per edited matrix (the
paper's weight-change analysis, §6.1).

Each edit is also given the sum of the Deltas applied before it (``earlier``): an editor that
reads earlier edits (AlphaEdit: the keys they carry, which its update must preserve) gets its
state from the trajectory, not from a cache of its own, so every trajectory starts clean.

Resume: every step's Delta and row are stored (``StepStore``). A re-run loads the stored Deltas
and applies them in the same order, with the same float operations, as the original run did, so
the model it continues from is bit-identical and the rows it then computes are the same; the
stored Deltas hold what they carry, so ``earlier`` is rebuilt exactly as well.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from editcollapse.core.case import EditCase
from editcollapse.core.collapse import COLLAPSE_THRESHOLD, is_collapsed
from editcollapse.core.delta import Delta, WeightBackup
from editcollapse.models.loading import LoadedModel
from editcollapse.stages.sequential.groups import Member
from editcollapse.stages.sequential.store import StepStore

EditFn = Callable[[LoadedModel, EditCase, Delta | None], Delta]  # (model, case, earlier edits summed)


@dataclass(frozen=True)
class Measurement:
    """What the evaluator reports about the current model."""

    ppl: float  # the paper's ME-PPL: mean of per-sentence perplexities
    ppl_corpus_level: float  # exp(total NLL / total tokens)
    successes: list[float]  # per edit so far, in edit order


class Evaluator(Protocol):
    """Measures a model: perplexity on a corpus and the success of a list of edits."""

    def __call__(self, loaded: LoadedModel, cases: Sequence[EditCase]) -> Measurement: ...


@dataclass(frozen=True)
class TrajectorySettings:
    """How a trajectory runs: collapse threshold and how often to evaluate."""

    threshold: float = COLLAPSE_THRESHOLD
    ppl_every: int = 1
    extra_every: int = 10  # the extra evaluator (a second corpus), when given: every k edits

    def __post_init__(self) -> None:
        if self.ppl_every < 1 or self.extra_every < 1:
            raise ValueError(f"ppl_every and extra_every must be ≥ 1, got {self.ppl_every}, {self.extra_every}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")


def norm_records(step: Delta | None, cumulative: Delta | None) -> list[dict[str, Any]]:
    """Per edited matrix: Frobenius and spectral norms of this step's change and of the cumulative one."""
    if cumulative is None:
        return []
    step_norms = step.norms() if step is not None else {}
    records = []
    for name, cum in sorted(cumulative.norms().items()):
        own = step_norms.get(name, {"fro": 0.0, "spectral": 0.0})
        records.append(
            {
                "param": name,
                "step_fro": own["fro"],
                "step_spectral": own["spectral"],
                "cum_fro": cum["fro"],
                "cum_spectral": cum["spectral"],
            }
        )
    return records


def norm_summary(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Whole-change norms from per-matrix ones: Frobenius = √Σ‖ΔWᵢ‖²_F (the norm of all changed
    weights as one vector), spectral = maxᵢ ‖ΔWᵢ‖₂ (the largest gain any edited matrix gained)."""
    if not records:
        return {"delta_fro": None, "delta_spectral": None, "cumulative_fro": None, "cumulative_spectral": None}
    return {
        "delta_fro": math.sqrt(math.fsum(r["step_fro"] ** 2 for r in records)),
        "delta_spectral": max(r["step_spectral"] for r in records),
        "cumulative_fro": math.sqrt(math.fsum(r["cum_fro"] ** 2 for r in records)),
        "cumulative_spectral": max(r["cum_spectral"] for r in records),
    }


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _measured_fields(measurement: Measurement | None, threshold: float) -> dict[str, Any]:
    if measurement is None:
        return {
            "ppl_mean": None,
            "ppl_corpus": None,
            "collapsed": None,
            "newest_success": None,
            "earlier_success": None,
            "successes": None,
        }
    successes = measurement.successes
    return {
        "ppl_mean": measurement.ppl,
        "ppl_corpus": measurement.ppl_corpus_level,
        "collapsed": is_collapsed(measurement.ppl, threshold),
        "newest_success": successes[-1] if successes else None,
        "earlier_success": _mean(successes[:-1]),
        "successes": list(successes),
    }


class _Restorer:
    """Keeps the first backup of every parameter an edit touches, to restore the base model exactly."""

    def __init__(self) -> None:
        self._backups: list[WeightBackup] = []
        self._seen: set[str] = set()

    def apply(self, loaded: LoadedModel, delta: Delta) -> None:
        backup = delta.apply(loaded.model)
        if not self._seen.issuperset(delta.params):
            self._backups.append(backup)
            self._seen.update(delta.params)

    def restore(self) -> None:
        # Reverse order: each parameter's last restore is its first-touch backup, the base weight.
        for backup in reversed(self._backups):
            backup.restore()


def run_trajectory(
    loaded: LoadedModel,
    edit: EditFn,
    members: Sequence[Member],
    evaluate: Evaluator,
    store: StepStore,
    settings: TrajectorySettings,
    labels: dict[str, Any],
    on_step: Callable[[dict[str, Any]], None] | None = None,
    extra: Evaluator | None = None,
) -> list[dict[str, Any]]:
    """Edit ``members`` one after another on ``loaded``; return one row per step (step 0 = unedited).

    ``labels`` (run id, model, method, group, trial, corpus …) are copied into every row. The model
    is restored bit for bit when this returns or raises. Stops after the first evaluated step whose
    perplexity collapsed, or after the last member.

    ``extra`` (optional) measures the perplexity on a second corpus (``extra_ppl_mean``,
    ``extra_ppl_corpus``) at step 0, every ``settings.extra_every`` edits and at the trajectory's
    last step (its end or its collapse): e.g. ME-PPL-1k at a coarser interval beside ME-PPL-50
    after every edit. Only ``evaluate``'s perplexity decides collapse.
    """
    store.check_plan([member.case.case_id for member in members])
    stored = store.stored_rows()
    if len(stored) > 1 and stored[1].get("error") is None:
        _check_replay(loaded, edit, members[0], store)
    rows: list[dict[str, Any]] = []
    restorer = _Restorer()
    cumulative: Delta | None = None
    last = len(members)
    try:
        for step in range(0, last + 1):
            member = members[step - 1] if step else None
            if step < len(stored):  # resume: replay the stored step exactly
                row = stored[step]
                if member is not None and row.get("error") is None:
                    delta = store.load_delta(step)
                    restorer.apply(loaded, delta)
                    cumulative = delta if cumulative is None else cumulative + delta
            else:
                row, delta = _compute_step(loaded, edit, members, step, evaluate, settings, restorer, cumulative, extra)
                if delta is not None:
                    cumulative = delta if cumulative is None else cumulative + delta
                records = norm_records(delta, cumulative)
                row = {**labels, **row, **norm_summary(records), "norms": records}
                store.save(step, row, delta)
            rows.append(row)
            if on_step is not None:
                on_step(row)
            if row.get("collapsed"):
                break
    finally:
        restorer.restore()
    return rows


def _check_replay(loaded: LoadedModel, edit: EditFn, first: Member, store: StepStore, rtol: float = 1e-4) -> None:
    """Before resuming, recompute step 1 on the unedited model and compare it with the stored Delta.

    This also puts the editor's per-process caches (ROME's context templates are sampled from the
    model it first sees) into the state the original run had, so the steps computed after the
    resume match the ones an uninterrupted run computes.
    """
    stored = store.load_delta(1)
    fresh = edit(loaded, first.case, None)
    for name, change in stored.params.items():
        if name not in fresh.params:
            raise ValueError(f"{store.folder}: stored step 1 changes {name}, a recomputation does not")
        old, new = change.materialize(), fresh.params[name].materialize(change.materialize().dtype)
        scale = float(old.abs().max()) or 1.0
        if float((old - new).abs().max()) > rtol * scale:
            raise ValueError(
                f"{store.folder}: step 1 recomputed differs from the stored Delta for {name}; "
                "code, hparams or model changed since the run started — use a new run id"
            )


def _compute_step(
    loaded: LoadedModel,
    edit: EditFn,
    members: Sequence[Member],
    step: int,
    evaluate: Evaluator,
    settings: TrajectorySettings,
    restorer: _Restorer,
    earlier: Delta | None,
    extra: Evaluator | None = None,
) -> tuple[dict[str, Any], Delta | None]:
    """Edit with member ``step`` (none at step 0) on the model carrying ``earlier``, apply the edit,
    measure; the row and the Delta."""
    member = members[step - 1] if step else None
    row: dict[str, Any] = {
        "step": step,
        "case_id": member.case.case_id if member else None,
        "selection": member.role if member else None,
        "single_ppl": member.single_ppl if member else None,
        "error": None,
        "diagnostics": None,
    }
    started = time.perf_counter()
    delta = None
    if member is not None:
        try:
            delta = edit(loaded, member.case, earlier)
        except Exception as error:  # a failed edit is a row; the trajectory goes on without it
            row["error"] = f"{type(error).__name__}: {error}"
        if delta is not None:
            restorer.apply(loaded, delta)
            row["diagnostics"] = delta.diagnostics or None
    edited = time.perf_counter()
    measurement = None
    if step == 0 or step % settings.ppl_every == 0 or step == len(members):
        measurement = evaluate(loaded, [m.case for m in members[:step]])
    row.update(_measured_fields(measurement, settings.threshold))
    row["extra_ppl_mean"] = row["extra_ppl_corpus"] = None
    if extra is not None and (
        step == 0 or step % settings.extra_every == 0 or step == len(members) or row["collapsed"]
    ):
        second = extra(loaded, [m.case for m in members[:step]])  # its successes are not stored
        row["extra_ppl_mean"], row["extra_ppl_corpus"] = second.ppl, second.ppl_corpus_level
    finished = time.perf_counter()
    row["edit_seconds"] = edited - started if member is not None else None
    row["eval_seconds"] = finished - edited
    row["seconds"] = finished - started
    return row, delta
