"""The sequential-editing flow (paper §6.2): hard vs normal trajectories until collapse or n_edits.

A thin Prefect wrapper around :mod:`editcollapse.stages.sequential`: one task run per (group, trial),
named after it, a progress artifact while it runs, the rows in the ``sequential`` table, the
figures as PNG in the run's folder and as a markdown artifact, a summary table artifact, and one
``runs`` row. The run id defaults to a digest of the parameters, so running the same command
again resumes: finished trajectories are read back, an interrupted one continues from its last
stored step. ``sequential_editing.fn(...)`` runs it without Prefect.
"""

from __future__ import annotations

import base64
import logging
import math
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE

from editcollapse.orchestration.ops.setup import GPU_TAG
from editcollapse.stages.sequential.run import SequentialConfig, Trajectory, run_one

STAGE = "sequential"


def _logger() -> logging.Logger | Any:
    from prefect import get_run_logger

    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 — no run context (``.fn`` call)
        return logging.getLogger(__name__)


def _in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


@task(
    name="sequential-trajectory", task_run_name="{trajectory.shard}", cache_policy=NONE, tags=[GPU_TAG]
)  # one model-editing task per GPU at a time (editcollapse.orchestration.ops.concurrency)
def trajectory_task(
    loaded: Any,
    edit: Any,
    evaluate: Any,
    warehouse: Any,
    config: SequentialConfig,
    run_id: str,
    trajectory: Trajectory,
    extra: Any = None,
) -> list[dict[str, Any]]:
    """One trajectory, with a progress artifact that follows its steps."""
    logger = _logger()
    progress_id = None
    if _in_prefect_run():
        from prefect.artifacts import create_progress_artifact

        progress_id = create_progress_artifact(
            0.0, description=f"{trajectory.shard}: edits made of {len(trajectory.members)}"
        )

    def on_step(row: dict[str, Any]) -> None:
        ppl, second = row.get("ppl_mean"), row.get("extra_ppl_mean")
        logger.info(
            "%s step %d %s ppl=%s%s cumulative ‖ΔW‖_F=%s newest=%s earlier=%s %.0fs",
            trajectory.shard,
            row["step"],
            row.get("case_id") or "(unedited)",
            "—" if ppl is None else f"{ppl:.2f}",
            "" if second is None else f" {config.extra_corpus}={second:.2f}",
            "—" if row.get("cumulative_fro") is None else f"{row['cumulative_fro']:.3g}",
            row.get("newest_success"),
            "—" if row.get("earlier_success") is None else f"{row['earlier_success']:.2f}",
            row.get("seconds") or 0.0,
        )
        if progress_id is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(progress_id, 100.0 * row["step"] / len(trajectory.members))

    return run_one(loaded, edit, evaluate, warehouse, config, run_id, trajectory, on_step=on_step, extra=extra)


def _markdown_figures(paths: list[Path]) -> str:
    parts = []
    for path in paths:
        encoded = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"### {path.stem}\n\n![{path.stem}](data:image/png;base64,{encoded})\n\n`{path}`\n")
    return "\n".join(parts)


def _publish(lines: list[dict[str, Any]], figures: list[Path], run_id: str) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    table = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in line.items()} for line in lines
    ]
    create_table_artifact(
        table,
        key=f"sequential-summary-{run_id}".lower()[:100],
        description="one line per (group, trial): edits, final perplexity, collapse step",
    )
    create_markdown_artifact(
        _markdown_figures(figures),
        key=f"sequential-figures-{run_id}".lower()[:100],
        description="perplexity and weight change vs number of edits",
    )


@flow(name="sequential-editing", log_prints=True)
def sequential_editing(
    model: str = "smollm2-135m",
    method: str = "rome",
    hard_source: str = "hardcf",
    n_edits: int = 20,
    trials: int = 3,
    seed: int = 0,
    ppl_corpus: str = "me-ppl-1k",
    ppl_every: int = 1,
    dataset: str = "counterfact",
    threshold: float = 1000.0,
    group_size: int | None = None,
    warehouse: str | None = None,
    run_id: str | None = None,
    ppl_batch_size: int = 16,
    extra_corpus: str | None = None,
    extra_every: int = 10,
    sweep_run: str | None = None,
) -> dict[str, Any]:
    """Edit the hard and the normal group sequentially, ``trials`` orderings each; see the module doc.

    ``hard_source``: ``"hardcf"`` (the warehouse's ``hardcf`` table, filled from this model and
    method's ``ppl`` rows) or a HardCF/HardEdit file. ``dataset``: where the hard ids point and
    the normal group is drawn from. ``ppl_every``: evaluate perplexity and edit success every k
    edits (and at the last). ``extra_corpus``: a second perplexity corpus (e.g. ME-PPL-1k) measured
    every ``extra_every`` edits, at step 0 and at each trajectory's last step; collapse is judged on
    ``ppl_corpus``. ``sweep_run``: take the hard group from this single-edit sweep only. The unedited
    model's measurement (step 0) is computed once and shared by the trajectories. Returns the run
    id, the figures and one summary line per trajectory.
    """
    from editcollapse.datasets import load_cases, load_ppl_corpus
    from editcollapse.editors.api import hparams_for
    from editcollapse.models import load_model
    from editcollapse.stages.sequential.measure import BaselineOnce, CorpusEvaluator
    from editcollapse.stages.sequential.run import make_edit, plan_trajectories, run_folder, summary, write_plots
    from editcollapse.stages.sequential.sources import build_groups
    from editcollapse.warehouse import Warehouse
    from editcollapse.warehouse.runs import finish_run, start_run

    config = SequentialConfig(
        model=model,
        method=method,
        hard_source=hard_source,
        dataset=dataset,
        n_edits=n_edits,
        trials=trials,
        seed=seed,
        ppl_corpus=ppl_corpus,
        ppl_every=ppl_every,
        threshold=threshold,
        group_size=group_size,
        extra_corpus=extra_corpus,
        extra_every=extra_every,
        sweep_run=sweep_run,
    )
    run_id = run_id or config.default_run_id()
    store = Warehouse(warehouse)
    logger = _logger()
    run_row = start_run(
        store,
        model=model,
        method=method,
        run_id=run_id,
        stage=STAGE,
        dataset=dataset,
        parameters=config.parameters(),
        ppl_corpus=ppl_corpus,
        threshold=threshold,
    )
    try:
        loaded = load_model(model)
        hparams = hparams_for(loaded, method)
        corpus = load_ppl_corpus(ppl_corpus)
        evaluate = BaselineOnce(CorpusEvaluator(tuple(corpus.texts), batch_size=ppl_batch_size))
        extra = None
        if extra_corpus is not None:
            extra = BaselineOnce(
                CorpusEvaluator(tuple(load_ppl_corpus(extra_corpus).texts), batch_size=ppl_batch_size, successes=False)
            )
        pool = load_cases(dataset).cases
        groups = build_groups(
            hard_source, pool, config.size, seed, warehouse=store, model=model, method=method, sweep_run=sweep_run
        )
        logger.info(
            "run %s: hard group %d collapsed + %d filled by single-edit perplexity; normal group %d random cases of %s",
            run_id,
            sum(m.role == "collapsed" for m in groups.hard),
            sum(m.role == "top_ppl" for m in groups.hard),
            len(groups.normal),
            dataset,
        )
        edit = make_edit(method, hparams)
        run_task = trajectory_task if _in_prefect_run() else trajectory_task.fn
        rows: list[dict[str, Any]] = []
        for trajectory in plan_trajectories(groups, config):
            rows.extend(run_task(loaded, edit, evaluate, store, config, run_id, trajectory, extra))
        lines = summary(rows)
        figures = write_plots(rows, run_folder(store, config, run_id), config, run_id)
        if _in_prefect_run():
            _publish(lines, figures, run_id)
    except BaseException:
        finish_run(store, model, method, run_row, status="failed")
        raise
    baseline = next((row["ppl_mean"] for row in rows if row["step"] == 0), None)
    finish_run(
        store,
        model,
        method,
        run_row,
        status="completed",
        model_revision=loaded.revision,
        n_cases=sum(line["edits"] for line in lines),
        n_errors=sum(line["errors"] for line in lines),
        n_collapsed=sum(line["collapsed_at"] is not None for line in lines),
        baseline_ppl_mean=baseline,
    )
    return {"run_id": run_id, "figures": [str(path) for path in figures], "summary": lines}
