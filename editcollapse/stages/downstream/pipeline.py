"""The downstream evaluation, start to end: select the models, build the suite, evaluate each
model, store rows in the ``downstream`` table, correlate with perplexity, plot.

Plain Python (no Prefect): ``editcollapse.orchestration.flows.downstream`` runs the same function as a flow, each
model a task run. One process loads the model once and evaluates the models one after another,
applying each edit in place and restoring the weights after it. Re-running with the same run id
(the default id is a digest of the parameters) evaluates only the models whose part is not in the
warehouse yet. The run's folder (its ``downstream`` partition folder) holds the task suite that
was evaluated and the plot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editcollapse.core.collapse import COLLAPSE_THRESHOLD
from editcollapse.core.hparams_file import hparams_file_parameters
from editcollapse.stages.downstream.catalog import GEOFACTS_MC, LASTWORD, MMLU_SUB, mmlu_path, prepare_suite
from editcollapse.stages.downstream.config import DownstreamConfig
from editcollapse.stages.downstream.correlation import correlations, scatter_plot
from editcollapse.stages.downstream.runner import load_tasks, task_manager_for
from editcollapse.stages.downstream.selection import BASELINE_REF, EditRef, select_edits
from editcollapse.stages.progress import OnProgress, ignore_progress
from editcollapse.stages.result import StageResult, bulky
from editcollapse.warehouse.store import Warehouse

STAGE = "downstream"
TABLE = "downstream"


def default_tasks(mmlu_file: str | Path | None = None) -> list[str]:
    """The offline suites that can be built here (the MMLU subset only when its file is found)."""
    found = mmlu_path(mmlu_file)
    return [LASTWORD, GEOFACTS_MC] + ([MMLU_SUB] if found is not None and found.is_file() else [])


def default_run_id(parameters: dict[str, Any]) -> str:
    """``down-<12 hex>``: a digest of the parameters (same command → same run → resume)."""
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest()
    return f"down-{digest[:12]}"


@dataclass(frozen=True)
class DownstreamResult(StageResult):
    """A finished downstream run: every score, the correlations with perplexity and the plot."""

    run_id: str
    rows: tuple[dict[str, Any], ...] = bulky()  # one per (model, task, metric)
    correlations: tuple[dict[str, Any], ...]  # per task metric: Pearson (log10 ppl) and Spearman, n
    plot: str | None
    failed: dict[str, str]  # edit → why it could not be evaluated
    unreachable: dict[str, str]  # task → why it could not be loaded
    baseline_ppl_mean: float
    recorded_ppl: dict[str, float]  # edit → the perplexity its source table recorded

    def headline(self) -> str:
        return f"{len(self.rows)} scores, {len(self.failed)} failed edits; plot {self.plot}"


def run_downstream(
    config: DownstreamConfig,
    warehouse: Warehouse,
    *,
    evaluate: Callable[[EditRef, Any], list[dict[str, Any]]] | None = None,
    log: logging.Logger | logging.LoggerAdapter = logging.getLogger(__name__),
    on_progress: OnProgress = ignore_progress,
) -> DownstreamResult:
    """Evaluate the unedited ``config.model`` and the edited models ``config.edits`` names on
    ``config.tasks``.

    ``edits``: see :func:`editcollapse.stages.downstream.selection.select_edits`. ``evaluate(ref,
    context)`` evaluates one model (default :func:`editcollapse.stages.downstream.evaluate.evaluate_ref`;
    the flow passes its Prefect task). ``on_progress(done, total)`` counts the models (the baseline
    included; one already stored or failed counts as done).
    """
    from editcollapse.stages.downstream.evaluate import DownstreamContext, evaluate_ref
    from editcollapse.stages.sweep.plan import resolve_ppl_corpus
    from editcollapse.warehouse.runs import finish_run, start_run

    model, method, limit = config.model, config.method, config.limit
    task_names = list(config.tasks) or default_tasks(config.mmlu_file)
    corpus = resolve_ppl_corpus(config.ppl_corpus)
    parameters = {
        "model": model,
        "method": method,
        "edits": config.edits,
        "tasks": task_names,
        "limit": limit,
        "k": config.k,
        "max_edits": config.max_edits,
        "source_run": config.source_run,
        "ppl_corpus": corpus,
        "include_path": config.include_path,
        "mmlu_file": str(mmlu_path(config.mmlu_file) or ""),
        "items": config.items,
        "batch_size": config.batch_size,
        "bootstrap_iters": config.bootstrap_iters,
        "seed": config.seed,
    }
    parameters |= hparams_file_parameters(config.hparams_file)
    run_id = config.run_id or default_run_id(parameters)
    folder = warehouse.partition_dir(TABLE, model, method, run_id)
    refs = [
        BASELINE_REF,
        *select_edits(
            warehouse,
            model=model,
            method=method,
            edits=config.edits,
            k=config.k,
            max_edits=config.max_edits,
            source_run=config.source_run,
            seed=config.seed,
        ),
    ]
    log.info(
        f"run {run_id}: {len(refs) - 1} edited model(s) + baseline of {model} on {', '.join(task_names)}"
        f" (limit {limit}, perplexity on {corpus})"
    )
    loaded, ppl_texts = _load(model, config.device, config.seed), _ppl_texts(corpus)
    run_row = start_run(
        warehouse,
        model=model,
        method=method,
        run_id=run_id,
        stage=STAGE,
        dataset=config.edits,
        parameters=parameters,
        identity=_identity(config, loaded, refs, ppl_texts),
        model_revision=loaded.revision,
        ppl_corpus=corpus,
        threshold=COLLAPSE_THRESHOLD,
    )
    try:
        suite = prepare_suite(
            task_names, folder / "suite", mmlu_file=config.mmlu_file, items=config.items, seed=config.seed
        )
        includes = [path for path in (suite, config.include_path) if path is not None]
        loaded_tasks = load_tasks(task_names, task_manager_for(task_names, includes))
        context = DownstreamContext(
            loaded=loaded,
            tasks=loaded_tasks,
            ppl_texts=ppl_texts,
            method=method,
            run_id=run_id,
            limit=limit,
            batch_size=config.batch_size,
            bootstrap_iters=config.bootstrap_iters,
            hparams_file=config.hparams_file,
        )
        failed = _evaluate_all(refs, context, warehouse, model, method, evaluate or evaluate_ref, log, on_progress)
    except BaseException:
        finish_run(warehouse, model, method, run_row, status="failed")
        raise
    rows = warehouse.read(TABLE, model=model, method=method, run_id=run_id).to_pylist()
    result = _result(
        rows,
        refs,
        failed,
        loaded_tasks.unreachable,
        folder,
        run_id,
        title=f"{method} edits of {model}: perplexity ({corpus}) vs downstream",
    )
    finish_run(
        warehouse,
        model,
        method,
        run_row,
        status="completed",
        n_cases=len(refs) - 1,
        n_errors=len(failed),
        baseline_ppl_mean=result.baseline_ppl_mean,
    )
    return result


def _load(model: str, device: str | None, seed: int) -> Any:
    from editcollapse.models import load_model

    return load_model(model, device=device, seed=seed)


def _identity(config: DownstreamConfig, loaded: Any, refs: list[EditRef], ppl_texts: list[str]) -> dict[str, Any]:
    """The run's identity (:mod:`~editcollapse.stages.identity`): its edits are the cases it reads
    (each re-edited case's content; stored Deltas by their ref, which names their run, trajectory
    and step, not by path: a moved warehouse is the same input); the hyperparameters and the
    editor's state count only when it edits."""
    from editcollapse.editors.api import check_ready, hparams_for
    from editcollapse.stages.identity import digest, edit_identity

    hparams = None if config.edits == "none" else hparams_for(loaded, config.method, config.hparams_file)
    return edit_identity(
        hparams=hparams,
        editor_state=None if hparams is None else check_ready(config.method, hparams),
        model_revision=loaded.revision,
        cases=digest([(ref.ref, ref.source_table, ref.case and ref.case.to_row()) for ref in refs]),
        ppl_texts=ppl_texts,
    )


def _ppl_texts(corpus: str) -> list[str]:
    from editcollapse.datasets import load_ppl_corpus

    return list(load_ppl_corpus(corpus).texts)


def _evaluate_all(
    refs: list[EditRef],
    context: Any,
    store: Warehouse,
    model: str,
    method: str,
    evaluate: Callable[[EditRef, Any], list[dict[str, Any]]],
    log: logging.Logger | logging.LoggerAdapter,
    on_progress: OnProgress,
) -> dict[str, str]:
    """Evaluate every model whose part is missing; write its part; return {ref: error} of failures."""
    failed: dict[str, str] = {}
    for done, ref in enumerate(refs):
        on_progress(done, len(refs))  # the models before this one: evaluated, stored earlier or failed
        if store.has_part(TABLE, model, method, context.run_id, ref.ref):
            log.info(f"{ref.ref}: already in the warehouse")
            continue
        try:
            rows = evaluate(ref, context)
        except Exception as error:  # noqa: BLE001 — one edit that cannot be rebuilt is reported, not fatal
            if ref.is_baseline:
                raise
            failed[ref.ref] = f"{type(error).__name__}: {error}"
            log.info(f"{ref.ref}: failed ({failed[ref.ref]})")
            continue
        store.write_part(TABLE, rows, model=model, method=method, run_id=context.run_id, shard=ref.ref)
        recorded = "" if math.isnan(ref.recorded_ppl) else f" (recorded by {ref.source_table}: {ref.recorded_ppl:.4g})"
        log.info(
            f"{ref.ref}: ppl {rows[0]['ppl_mean']:.4g}{recorded}; "
            + ", ".join(f"{r['task']} {r['metric']} {r['value']:.4g}" for r in rows)
        )
    on_progress(len(refs), len(refs))
    return failed


def _result(
    rows: list[dict[str, Any]],
    refs: list[EditRef],
    failed: dict[str, str],
    unreachable: dict[str, str],
    folder: Path,
    run_id: str,
    title: str,
) -> DownstreamResult:
    baseline = [row["ppl_mean"] for row in rows if row["edit_ref"] == BASELINE_REF.ref]
    recorded = {ref.ref: ref.recorded_ppl for ref in refs}
    plot = scatter_plot(rows, folder / f"{run_id}-ppl-vs-score.png", title=title) if rows else None
    return DownstreamResult(
        run_id=run_id,
        rows=tuple(rows),
        correlations=tuple(vars(c) for c in correlations(rows)),
        plot=str(plot) if plot else None,
        failed=failed,
        unreachable=unreachable,
        baseline_ppl_mean=baseline[0] if baseline else math.nan,
        recorded_ppl={ref: ppl for ref, ppl in recorded.items() if not math.isnan(ppl)},
    )
