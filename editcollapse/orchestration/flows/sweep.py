"""The single-edit sweep as a Prefect flow: shards fanned out as mapped tasks over the warehouse.

Works with no server (Prefect's ephemeral mode) and against ``prefect server`` (set
``PREFECT_API_URL``). Re-running with the same run id (the default id is a digest of the
parameters) computes only the shards missing from the warehouse. A progress bar and a progress
artifact follow the cases (with a task runner, as its shards finish); at the end a table artifact
(summary, most damaging edits) and a markdown artifact (log-perplexity histogram). Shards run one
at a time by default (``max_workers=1``: on a CPU machine parallel shards only compete for cores);
the ``task_runner`` parameter (or ``single_edit_sweep.with_options(task_runner=…)``) runs them
elsewhere, e.g. on Dask.
"""

from __future__ import annotations

import re
from contextlib import nullcontext

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from editcollapse.orchestration.progress import ProgressBar, progress_artifact
from editcollapse.orchestration.run_context import run_logger
from editcollapse.orchestration.runners import LOCAL, make_task_runner
from editcollapse.orchestration.tasks.sweep import edit_shard_task, finish_sweep_task, prepare_sweep_task
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.summary import SweepResult, log_ppl_histogram
from editcollapse.warehouse.store import Warehouse


def artifact_key(prefix: str, run_id: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for a run."""
    return f"{prefix}-{re.sub(r'[^a-z0-9]+', '-', run_id.lower()).strip('-')}"


@flow(
    name="single-edit-sweep",
    flow_run_name="sweep {config.model} · {config.method} · {config.dataset}",
    task_runner=ThreadPoolTaskRunner(max_workers=1),
)
def single_edit_sweep(
    config: SweepConfig = SweepConfig(),
    warehouse: str | None = None,
    task_runner: str = LOCAL,
    progress_bar: bool = True,
) -> SweepResult:
    """Edit the original ``config.model`` with each case of ``config.dataset`` (independently),
    measure the edit and ME-PPL perplexity, and keep every row in the warehouse; return the run's
    result. ``task_runner`` runs the shards elsewhere (``dask``, ``dask:4``, ``dask:tcp://host:8786``,
    ``threads:N``: see :mod:`editcollapse.orchestration.runners`); ``progress_bar=False`` hides the
    terminal bar (the progress artifact stays)."""
    spec = config.resolved()
    spec.preflight()  # a mistake fails here, with the command line's message, before any runs row
    runner = None if task_runner == LOCAL else make_task_runner(task_runner)  # a bad spec fails here
    store = Warehouse(warehouse)
    root = str(store.root)
    plan = prepare_sweep_task(spec, root)
    done = len(plan.shards) - len(plan.pending)
    run_logger(__name__).info(
        f"run {spec.run_id}: {plan.n_cases} cases in {len(plan.shards)} shards of {spec.shard_size}; "
        f"{done} already in {root}, {len(plan.pending)} to compute (ppl corpus {spec.ppl_corpus})"
    )
    bar = ProgressBar(
        f"sweep {spec.run_id}",
        plan.n_cases,
        completed=plan.n_stored,
        enabled=progress_bar,
        artifact=progress_artifact(artifact_key("sweep-progress", spec.run_id), f"cases of {spec.run_id} done"),
    )
    with bar, runner or nullcontext():
        parameters = dict(
            spec=unmapped(spec),
            shard=plan.pending,
            cases=[plan.shards[i] for i in plan.pending],
            warehouse_root=unmapped(root),
            # the bar cannot travel to other processes: a task runner's shards move it as they end
            on_case=unmapped(bar.advance if runner is None else None),
        )
        futures = edit_shard_task.map(**parameters) if runner is None else runner.map(edit_shard_task, parameters)
        finished = plan.n_stored
        try:
            for future in as_completed(futures):
                finished += len(plan.shards[future.result().shard])
                bar.update(finished)  # a shard whose errors were retried counts whole
        except BaseException:
            finish_sweep_task(plan, root, status="failed")
            raise
    result = finish_sweep_task(plan, root)
    _publish(result, spec)
    return result


_COUNTS = (
    "n_cases",
    "n_errors",
    "n_invalid",
    "n_measured",
    "n_collapsed",
    "n_nonfinite",
    "ppl_median",
    "ppl_p90",
    "ppl_max",
    "baseline_ppl_mean",
)


def _publish(result: SweepResult, spec: SweepConfig) -> None:
    """The table and histogram artifacts, and the same summary on the log."""
    counts = {name: getattr(result, name) for name in _COUNTS}
    rows = [{"quantity": k, "value": v} for k, v in counts.items()]
    rows += [
        {
            "quantity": f"most damaging #{i + 1}",
            "value": f"{e['case_id']} ppl={e['ppl_mean']:.4g} ({e['subject']} → {e['target_new']})",
        }
        for i, e in enumerate(result.most_damaging)
    ]
    create_table_artifact(
        rows,
        key=artifact_key("sweep-summary", spec.run_id),
        description=f"single-edit sweep {spec.run_id}: {spec.model} / {spec.method} / {spec.dataset}",
    )
    histogram = log_ppl_histogram(result.ppl_means, spec.threshold)
    create_markdown_artifact(
        f"# ME-PPL after each single edit\n\n{spec.model} · {spec.method} · {spec.dataset} · corpus "
        f"{spec.ppl_corpus} · run `{spec.run_id}`\n\nunedited model: {result.baseline_ppl_mean:.4g}; "
        f"collapsed (> {spec.threshold:g}, or NaN/inf): {result.n_collapsed} of {result.n_measured}"
        f"\n\n{histogram}\n",
        key=artifact_key("sweep-histogram", spec.run_id),
    )
    run_logger(__name__).info("summary: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
