"""The whole study as one Prefect flow: every step a subflow, so the UI shows one tree.

``editcollapse_study`` runs the steps of :data:`editcollapse.stages.study.STUDY_STEPS` in order
(``config.stages`` picks the stages): the single-edit sweep, HardCF, sequential editing, HardEdit
generation and filter, downstream evaluation and the analysis. Each step's config is built from
the study's config and the results before it (``editcollapse.stages.study``); this module only maps
each step to its flow and runs it.

Each subflow shows its own progress bar on the terminal (one after another) and publishes its own
artifacts (progress, tables, plots); the study adds a table artifact with one line per step and a
progress artifact over the steps. A step that fails is recorded and the steps that do not need its
output still run (the analysis always does); the study then ends failed, naming the failed steps.
Every step writes to the same warehouse (a directory or an fsspec URL) and resumes from it:
running the study again with the same config recomputes nothing that is stored.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from editcollapse.orchestration.flows.analysis import analyse_study
from editcollapse.orchestration.flows.downstream import downstream_eval
from editcollapse.orchestration.flows.hardcf import select_hardcf
from editcollapse.orchestration.flows.hardedit import filter_hardedit, generate_hardedit_candidates
from editcollapse.orchestration.flows.sequential import sequential_editing
from editcollapse.orchestration.flows.sweep import artifact_key, single_edit_sweep
from editcollapse.orchestration.progress import progress_artifact
from editcollapse.orchestration.run_context import config_run_name, run_logger
from editcollapse.orchestration.runners import LOCAL
from editcollapse.stages.result import StageResult
from editcollapse.stages.study import StudyConfig, StudyResult, StudyStep, chosen_steps
from editcollapse.warehouse.store import Warehouse

FLOWS = {
    "sweep": single_edit_sweep,
    "hardcf": select_hardcf,
    "sequential": sequential_editing,
    "hardedit-generate": generate_hardedit_candidates,
    "hardedit-filter": filter_hardedit,
    "downstream": downstream_eval,
    "analysis": analyse_study,
}


@flow(name="editcollapse-study", flow_run_name=config_run_name("study {model} · {method} · {dataset}"))
def editcollapse_study(
    config: StudyConfig = StudyConfig(), warehouse: str | None = None, task_runner: str = LOCAL
) -> StudyResult:
    """Run the study's steps as subflows on one warehouse (see the module doc). ``task_runner``:
    where the sweep's shards run (``local``, ``threads:N``, ``dask:N`` …)."""
    root = Warehouse(warehouse).location
    steps = chosen_steps(config)
    label = f"{config.model}-{config.method}-{config.dataset}"
    publish = progress_artifact(artifact_key("study-progress", label), f"steps of the study done: {len(steps)}")
    results: dict[str, StageResult] = {}
    lines: list[dict[str, str]] = []
    failed: set[str] = set()
    for done, step in enumerate(steps):
        line = _run_step(step, config, results, failed, root, task_runner)
        lines.append(line)
        run_logger(__name__).info(f"{line['step']}: {line['state']} — {line['result']}")
        if publish is not None:
            publish(100.0 * (done + 1) / len(steps))
    create_table_artifact(
        lines,
        key=artifact_key("study-stages", label),
        description=f"the study of {config.model} / {config.method} / {config.dataset} in {root}: one line per step",
    )
    result = StudyResult(warehouse=root, steps=tuple(lines), results=results)
    if result.failed:
        reasons = "; ".join(f"{line['step']} ({line['result']})" for line in lines if line["step"] in failed)
        raise RuntimeError(f"study step(s) failed: {reasons}")
    return result


def _run_step(
    step: StudyStep, config: StudyConfig, results: dict[str, StageResult], failed: set[str], root: str, task_runner: str
) -> dict[str, str]:
    """Run one step as a subflow (or skip it); its line for the study table."""
    if step.needs in failed:
        return {"step": step.name, "state": "skipped", "result": f"{step.needs} failed"}
    reason = step.nothing_to_do(results)
    if reason:
        return {"step": step.name, "state": "skipped", "result": reason}
    options: dict[str, Any] = {"task_runner": task_runner} if step.name == "sweep" else {}
    try:
        stage_config = step.build(config, results)
    except ValueError as error:
        failed.add(step.name)
        return {"step": step.name, "state": "Failed", "result": str(error)[:300]}
    subflow = FLOWS[step.name].with_options(flow_run_name=f"{step.name} · {config.model} · {config.method}")
    state = subflow(config=stage_config, warehouse=root, **options, return_state=True)
    if state.is_completed():
        results[step.name] = state.result()
        return {"step": step.name, "state": "completed", "result": results[step.name].headline()}
    failed.add(step.name)
    return {"step": step.name, "state": state.name, "result": (state.message or state.name)[:300]}
