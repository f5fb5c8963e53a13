"""The sequential-editing flow (paper §6.2): hard vs normal trajectories until collapse or n_edits.

A thin Prefect wrapper around :mod:`editcollapse.stages.sequential`: one task run per (group, trial),
named after it, a progress bar and a progress artifact over the edit steps, the rows in the
``sequential`` table, the figures as PNG in the run's folder and as a markdown artifact, a summary
table artifact, and one ``runs`` row. The run id defaults to a digest of the parameters, so
running the same command again resumes: finished trajectories are read back, an interrupted one
continues from its last stored step. ``sequential_editing.fn(config, warehouse)`` runs it without
Prefect (the bar still shows; no artifacts).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE

from editcollapse.orchestration.artifacts import figures_markdown, table_rows
from editcollapse.orchestration.flows.sweep import artifact_key
from editcollapse.orchestration.ops.setup import GPU_TAG
from editcollapse.orchestration.progress import ProgressBar, progress_artifact
from editcollapse.orchestration.run_context import in_prefect_run, run_logger
from editcollapse.stages.sequential.config import SequentialConfig
from editcollapse.stages.sequential.run import SequentialResult, Trajectory, run_one, run_sequential
from editcollapse.warehouse.store import Warehouse


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
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One trajectory, its steps on the run logger and passed on to ``on_step``."""
    logger = run_logger(__name__)

    def log_step(row: dict[str, Any]) -> None:
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
        if on_step is not None:
            on_step(row)

    return run_one(loaded, edit, evaluate, warehouse, config, run_id, trajectory, on_step=log_step, extra=extra)


def _publish(lines: list[dict[str, Any]], figures: list[Path], run_id: str) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(
        table_rows(lines),
        key=f"sequential-summary-{run_id}".lower()[:100],
        description="one line per (group, trial): edits, final perplexity, collapse step",
    )
    create_markdown_artifact(
        figures_markdown(figures),
        key=f"sequential-figures-{run_id}".lower()[:100],
        description="perplexity and weight change vs number of edits",
    )


@flow(name="sequential-editing")
def sequential_editing(config: SequentialConfig = SequentialConfig(), warehouse: str | None = None) -> SequentialResult:
    """Edit the hard and the normal group sequentially, ``config.trials`` orderings each (see the
    module doc and :class:`~editcollapse.stages.sequential.run.SequentialConfig`): one task run
    per trajectory, the unedited model measured once and shared by them."""
    config.preflight()  # a mistake fails here, with the command line's message, before any runs row
    in_run = in_prefect_run()
    run_id = config.run_id or config.default_run_id()
    artifact = progress_artifact(artifact_key("sequential-progress", run_id), f"edit steps of {run_id} done")
    with ProgressBar(f"sequential {run_id}", artifact=artifact) as bar:
        return run_sequential(
            config,
            Warehouse(warehouse),
            run_trajectory=trajectory_task if in_run else trajectory_task.fn,
            publish=_publish if in_run else None,
            log=run_logger(__name__),
            on_progress=bar.update,
        )
