"""A whole sweep without Prefect: prepare (cases, runs row, baseline), run missing shards, finish.

The Prefect flow (``editcollapse.orchestration.flows.sweep``) calls :func:`prepare_sweep` and
:func:`finish_sweep` and fans :func:`~editcollapse.stages.sweep.shard.run_shard` out as tasks;
:func:`run_sweep` does the same in one process, one shard after another, with one
:class:`~editcollapse.stages.sweep.resources.ResourceCache` (one model load) for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.stages.identity import cases_digest, edit_identity
from editcollapse.stages.progress import OnProgress, ignore_progress
from editcollapse.stages.sweep.plan import SweepConfig, check_unique_ids, shard_cases
from editcollapse.stages.sweep.resources import ResourceCache, SweepResources
from editcollapse.stages.sweep.selection import select_screened
from editcollapse.stages.sweep.shard import run_shard, shard_done, shard_errors
from editcollapse.stages.sweep.summary import SweepResult, run_summary
from editcollapse.warehouse.runs import finish_run, start_run, write_run
from editcollapse.warehouse.store import Warehouse

log = logging.getLogger(__name__)

STAGE = "single_edit_sweep"
INVALID_PART = "invalid"
SWEPT_TABLES = ("cases", "edit_metrics", "ppl", "edits")
COMPLETED_WITH_ERRORS = "completed_with_errors"  # every shard stored, some cases as errors: retry them


@dataclass
class SweepPlan:
    """A prepared sweep: its shards, which of them are still missing, and its ``runs`` row."""

    spec: SweepConfig
    shards: list[list[EditCase]]
    pending: list[int]
    run_row: dict[str, Any]
    n_invalid: int

    @property
    def n_cases(self) -> int:
        return sum(len(shard) for shard in self.shards)

    @property
    def n_stored(self) -> int:
        """Cases of the shards already in the warehouse (done before this invocation)."""
        return self.n_cases - sum(len(self.shards[index]) for index in self.pending)


def load_sweep_cases(spec: SweepConfig) -> tuple[list[EditCase], list[Any]]:
    """The sweep's valid cases (in the loader's order) and the loader's error records."""
    from editcollapse.datasets import load_cases

    loaded = load_cases(spec.dataset, limit=spec.limit, seed=spec.seed)
    return list(loaded.cases), list(loaded.errors)


def prepare_sweep(
    spec: SweepConfig, warehouse: Warehouse, *, cache: ResourceCache, cases: list[EditCase] | None = None
) -> SweepPlan:
    """Load and shard the cases, load the resources (an editor that is not ready is refused here),
    (re)start the ``runs`` row with the sweep's identity (a resume with another one is refused),
    store the loader's rejected records as ``invalid`` rows, measure the unedited model's
    perplexity once per run, and list the shards to compute: those not yet in the warehouse, and
    with ``spec.retry_errors`` those holding ``error`` rows (a finished shard's claim left by a
    killed worker is deleted). ``cases`` overrides loading ``spec.dataset`` (then ``spec.limit``
    still applies); with ``spec.screen_run`` only the screened selection of them is swept
    (:func:`~editcollapse.stages.sweep.selection.select_screened`); the resources come from ``cache``."""
    errors: list[Any] = []
    if cases is None:
        cases, errors = load_sweep_cases(spec)
    elif spec.limit is not None:
        cases = cases[: spec.limit]
    if spec.screen_run is not None:  # the loader's rejected records were never screened: not selected
        cases, errors = select_screened(warehouse, cases, spec.screen_run, top=spec.top, where=spec.select), []
    if not cases:
        raise ValueError(f"no valid cases to sweep in {spec.dataset!r} ({len(errors)} rejected records)")
    check_unique_ids(cases)
    shards = shard_cases(cases, spec.shard_size)
    resources = cache.get(spec)
    row = start_run(
        warehouse,
        model=spec.model,
        method=spec.method,
        run_id=spec.run_id,
        stage=STAGE,
        dataset=spec.dataset,
        parameters=spec.parameters(),
        identity=sweep_identity(resources, cases, errors),
        model_revision=resources.loaded.revision,
        n_shards=len(shards),
        ppl_corpus=spec.ppl_corpus,
        threshold=spec.threshold,
    )
    try:
        for table in SWEPT_TABLES:
            warehouse.remove_stray_temps(table, spec.model, spec.method, spec.run_id)
        if errors and not warehouse.has_part("edits", spec.model, spec.method, spec.run_id, INVALID_PART):
            warehouse.write_part(
                "edits",
                invalid_rows(spec.run_id, errors),
                model=spec.model,
                method=spec.method,
                run_id=spec.run_id,
                shard=INVALID_PART,
            )
        if row.get("baseline_ppl_mean") is None:
            row.update(_baseline(spec, resources))
            write_run(warehouse, spec.model, spec.method, row)
        pending = [index for index in range(len(shards)) if _to_compute(warehouse, spec, index)]
        for index in sorted(set(range(len(shards))) - set(pending)):
            warehouse.clear_dead_claim(spec.model, spec.method, spec.run_id, index)  # holder killed before releasing it
    except BaseException:
        _record_failure(warehouse, spec, row)
        raise
    return SweepPlan(spec=spec, shards=shards, pending=pending, run_row=row, n_invalid=len(errors))


def sweep_identity(resources: SweepResources, cases: list[EditCase], errors: list[Any]) -> dict[str, str | None]:
    """The identity of a sweep over ``cases`` (and the loader's rejected ``errors``) with ``resources``."""
    return edit_identity(
        hparams=resources.hparams,
        editor_state=resources.editor_state,
        model_revision=resources.loaded.revision,
        cases=cases_digest(cases, errors),
        ppl_texts=resources.ppl_texts,
    )


def _to_compute(warehouse: Warehouse, spec: SweepConfig, shard: int) -> bool:
    if not shard_done(warehouse, spec, shard):
        return True
    return spec.retry_errors and bool(shard_errors(warehouse, spec, shard))


def _baseline(spec: SweepConfig, resources: SweepResources) -> dict[str, float]:
    from editcollapse.evaluation.perplexity import perplexity

    loaded = resources.loaded
    result = perplexity(loaded.model, loaded.tokenizer, resources.ppl_texts, batch_size=spec.ppl_batch_size)
    return {"baseline_ppl_mean": float(result.mean_per_text), "baseline_ppl_corpus": float(result.corpus)}


def invalid_rows(run_id: str, errors: list[Any]) -> list[dict[str, Any]]:
    """One ``invalid`` row per record the loader rejected (file, index), with all its problems."""
    grouped: dict[tuple[str, int], list[str]] = {}
    for error in errors:
        grouped.setdefault((str(error.file), error.index), []).append(f"field {error.field!r}: {error.reason}")
    return [
        {
            "run_id": run_id,
            "case_id": f"invalid:{Path(file).name}#{index}",
            "shard": None,
            "status": "invalid",
            "error_type": "CaseError",
            "error": f"{file}: record {index}: " + "; ".join(problems),
        }
        for (file, index), problems in grouped.items()
    ]


def finish_sweep(plan: SweepPlan, warehouse: Warehouse, *, status: str = "completed") -> SweepResult:
    """Write the run's final ``runs`` row (counts from the warehouse, so resumed shards count;
    status ``running`` while other workers still hold shards, ``completed_with_errors`` when a
    case failed: ``--retry-errors`` computes those again) and refresh the DuckDB catalog file;
    return the run's result."""
    from editcollapse.warehouse.catalog import build_catalog

    spec = plan.spec
    if status == "completed" and not all(shard_done(warehouse, spec, i) for i in range(len(plan.shards))):
        status = "running"  # shards claimed by other workers: the last of them to finish completes the run
    result = run_summary(
        warehouse,
        spec.model,
        spec.method,
        spec.run_id,
        status=status,
        baseline_ppl_mean=plan.run_row.get("baseline_ppl_mean"),
    )
    if status == "completed" and result.n_errors:
        status = COMPLETED_WITH_ERRORS
        result = replace(result, status=status)
    finish_run(
        warehouse,
        spec.model,
        spec.method,
        plan.run_row,
        status=status,
        n_cases=result.n_cases,
        n_errors=result.n_errors,
        n_collapsed=result.n_collapsed,
    )
    build_catalog(warehouse)
    return result


def run_sweep(
    config: SweepConfig,
    warehouse: Warehouse,
    *,
    cases: list[EditCase] | None = None,
    on_case: Callable[[str], None] | None = None,
    on_progress: OnProgress = ignore_progress,
) -> SweepResult:
    """Resolve the perplexity corpus (:meth:`SweepConfig.resolved`), prepare, run every missing
    shard here (loading the model once), finish; return the run's result. ``on_case(case_id)``
    after each computed case; ``on_progress(done, total)`` over the run's cases."""
    spec = config.resolved()
    cache = ResourceCache()
    plan = prepare_sweep(spec, warehouse, cache=cache, cases=cases)
    log.info(
        "run %s: %d cases in %d shards, %d to compute", spec.run_id, plan.n_cases, len(plan.shards), len(plan.pending)
    )
    done = plan.n_stored

    def case_done(case_id: str) -> None:
        nonlocal done
        done += 1
        on_progress(done, plan.n_cases)
        if on_case is not None:
            on_case(case_id)

    on_progress(done, plan.n_cases)
    finished = done
    try:
        for index in plan.pending:
            run_shard(spec, index, plan.shards[index], warehouse, cache=cache, on_case=case_done)
            finished += len(plan.shards[index])  # a shard whose errors were retried counts whole
            done = finished
            on_progress(done, plan.n_cases)
    except BaseException:
        mark_failed(plan, warehouse)
        raise
    return finish_sweep(plan, warehouse)


def _record_failure(warehouse: Warehouse, spec: SweepConfig, row: dict[str, Any]) -> None:
    """Mark the ``runs`` row of a sweep that failed while it was being prepared (before any shard
    ran) as failed (see :func:`mark_failed`)."""
    _try_recording(spec.run_id, lambda: finish_run(warehouse, spec.model, spec.method, row, status="failed"))


def mark_failed(plan: SweepPlan, warehouse: Warehouse) -> None:
    """Record a failed run, as far as the warehouse lets us: when the failure is the warehouse itself
    (a full disk, a read-only folder) the row keeps saying ``running`` (the next run of the same
    command takes it over), and the original error is the one raised."""
    _try_recording(plan.spec.run_id, lambda: finish_sweep(plan, warehouse, status="failed"))


def _try_recording(run_id: str, record: Callable[[], object]) -> None:
    try:
        record()
    except Exception as error:  # noqa: BLE001 - the caller re-raises the failure that matters
        log.warning("run %s: could not record its failure (%s)", run_id, error)
