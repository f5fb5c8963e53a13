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
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS
from editcollapse.stages.downstream.catalog import GEOFACTS_MC, LASTWORD, MMLU_SUB, mmlu_path, prepare_suite
from editcollapse.stages.downstream.correlation import correlations, scatter_plot
from editcollapse.stages.downstream.runner import load_tasks, task_manager_for
from editcollapse.stages.downstream.selection import BASELINE_REF, EditRef, select_edits
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


def run_downstream(
    model: str = "smollm2-135m",
    edits: str = "extremes",
    tasks: Sequence[str] | None = None,
    limit: int | None = 50,
    *,
    method: str = "rome",
    k: int = 2,
    max_edits: int = 10,
    source_run: str | None = None,
    ppl_corpus: str = DEFAULT_PPL_CORPUS,
    include_path: str | None = None,
    mmlu_file: str | None = None,
    items: int = 500,
    batch_size: int = 8,
    bootstrap_iters: int = 1000,
    seed: int = 0,
    run_id: str | None = None,
    warehouse: str | None = None,
    device: str | None = None,
    evaluate: Callable[[EditRef, Any], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Evaluate the unedited ``model`` and the edited models ``edits`` names on ``tasks``.

    ``edits``: ``none``, ``extremes`` (``k`` most and least damaging edits of a sweep), ``hardcf``,
    ``hardedit``, ``sequential`` or comma-separated case ids (see
    :func:`editcollapse.stages.downstream.selection.select_edits`). ``tasks``: lm-eval task names and
    offline suites (default: the offline suites available here); ``include_path`` adds a folder of
    your own task YAMLs. ``limit``: items per task. ``evaluate(ref, context)`` evaluates one model
    (default :func:`editcollapse.stages.downstream.evaluate.evaluate_ref`; the flow passes its Prefect
    task). Returns the run summary.
    """
    from editcollapse.stages.downstream.evaluate import DownstreamContext, evaluate_ref
    from editcollapse.stages.sweep.plan import resolve_ppl_corpus
    from editcollapse.warehouse.runs import finish_run, start_run

    task_names = list(tasks) if tasks else default_tasks(mmlu_file)
    corpus = resolve_ppl_corpus(ppl_corpus)
    parameters = {
        "model": model,
        "method": method,
        "edits": edits,
        "tasks": task_names,
        "limit": limit,
        "k": k,
        "max_edits": max_edits,
        "source_run": source_run,
        "ppl_corpus": corpus,
        "include_path": include_path,
        "mmlu_file": str(mmlu_path(mmlu_file) or ""),
        "items": items,
        "batch_size": batch_size,
        "bootstrap_iters": bootstrap_iters,
        "seed": seed,
    }
    run_id = run_id or default_run_id(parameters)
    store = Warehouse(warehouse)
    folder = store.partition_dir(TABLE, model, method, run_id)
    refs = [
        BASELINE_REF,
        *select_edits(
            store, model=model, method=method, edits=edits, k=k, max_edits=max_edits, source_run=source_run, seed=seed
        ),
    ]
    print(
        f"run {run_id}: {len(refs) - 1} edited model(s) + baseline of {model} on {', '.join(task_names)}"
        f" (limit {limit}, perplexity on {corpus})"
    )
    run_row = start_run(
        store,
        model=model,
        method=method,
        run_id=run_id,
        stage=STAGE,
        dataset=edits,
        parameters=parameters,
        ppl_corpus=corpus,
        threshold=COLLAPSE_THRESHOLD,
    )
    try:
        suite = prepare_suite(task_names, folder / "suite", mmlu_file=mmlu_file, items=items, seed=seed)
        includes = [path for path in (suite, include_path) if path is not None]
        loaded_tasks = load_tasks(task_names, task_manager_for(task_names, includes))
        context = DownstreamContext(
            loaded=_load(model, device, seed),
            tasks=loaded_tasks,
            ppl_texts=_ppl_texts(corpus),
            method=method,
            run_id=run_id,
            limit=limit,
            batch_size=batch_size,
            bootstrap_iters=bootstrap_iters,
        )
        failed = _evaluate_all(refs, context, store, model, method, evaluate or evaluate_ref)
    except BaseException:
        finish_run(store, model, method, run_row, status="failed")
        raise
    rows = store.read(TABLE, model=model, method=method, run_id=run_id).to_pylist()
    summary = _summarise(
        rows,
        refs,
        failed,
        loaded_tasks.unreachable,
        folder,
        run_id,
        title=f"{method} edits of {model}: perplexity ({corpus}) vs downstream",
    )
    finish_run(
        store,
        model,
        method,
        run_row,
        status="completed",
        n_cases=len(refs) - 1,
        n_errors=len(failed),
        baseline_ppl_mean=summary["baseline_ppl_mean"],
    )
    return summary


def _load(model: str, device: str | None, seed: int) -> Any:
    from editcollapse.models import load_model

    return load_model(model, device=device, seed=seed)


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
) -> dict[str, str]:
    """Evaluate every model whose part is missing; write its part; return {ref: error} of failures."""
    failed: dict[str, str] = {}
    for ref in refs:
        if store.has_part(TABLE, model, method, context.run_id, ref.ref):
            print(f"{ref.ref}: already in the warehouse")
            continue
        try:
            rows = evaluate(ref, context)
        except Exception as error:  # noqa: BLE001 — one edit that cannot be rebuilt is reported, not fatal
            if ref.is_baseline:
                raise
            failed[ref.ref] = f"{type(error).__name__}: {error}"
            print(f"{ref.ref}: failed ({failed[ref.ref]})")
            continue
        store.write_part(TABLE, rows, model=model, method=method, run_id=context.run_id, shard=ref.ref)
        recorded = "" if math.isnan(ref.recorded_ppl) else f" (recorded by {ref.source_table}: {ref.recorded_ppl:.4g})"
        print(
            f"{ref.ref}: ppl {rows[0]['ppl_mean']:.4g}{recorded}; "
            + ", ".join(f"{r['task']} {r['metric']} {r['value']:.4g}" for r in rows)
        )
    return failed


def _summarise(
    rows: list[dict[str, Any]],
    refs: list[EditRef],
    failed: dict[str, str],
    unreachable: dict[str, str],
    folder: Path,
    run_id: str,
    title: str,
) -> dict[str, Any]:
    baseline = [row["ppl_mean"] for row in rows if row["edit_ref"] == BASELINE_REF.ref]
    recorded = {ref.ref: ref.recorded_ppl for ref in refs}
    plot = scatter_plot(rows, folder / f"{run_id}-ppl-vs-score.png", title=title) if rows else None
    return {
        "run_id": run_id,
        "rows": rows,
        "correlations": [vars(c) for c in correlations(rows)],
        "plot": str(plot) if plot else None,
        "failed": failed,
        "unreachable": unreachable,
        "baseline_ppl_mean": baseline[0] if baseline else math.nan,
        "recorded_ppl": {ref: ppl for ref, ppl in recorded.items() if not math.isnan(ppl)},
    }
