"""The whole study as one Prefect flow: every stage a subflow, so the UI shows one tree.

``editcollapse_study`` runs, in order (``stages`` picks a subset):

1. ``sweep``       single-edit sweep of ``dataset`` (``single-edit-sweep``; shards as task runs);
2. ``hardcf``      HardCF: the sweep's cases whose edit collapsed the model (``select-hardcf``);
3. ``sequential``  sequential editing, hard (HardCF) vs normal (``sequential-editing``);
4. ``hardedit``    HardEdit: generate candidates with an LLM, filter them with the editor on
                   ``model`` (``hardedit-generate`` then ``hardedit-filter``);
5. ``downstream``  lm-eval tasks on the unedited model and the sweep's extreme edits (``downstream-eval``);
6. ``analysis``    figures and tables of everything in the warehouse (``analyse-study``).

Each subflow publishes its own artifacts (progress, tables, plots); the study adds a table
artifact with one line per stage and a progress artifact over the stages. A stage that fails
is recorded and the stages that do not need its output still run (the analysis always does);
the study then ends failed, naming the failed stages. Every stage writes to the same warehouse
(a directory or an fsspec URL) and resumes from it: running the study again with the same
parameters recomputes nothing that is stored.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS
from editcollapse.orchestration.flows.analysis import analyse_study
from editcollapse.orchestration.flows.downstream import downstream_eval
from editcollapse.orchestration.flows.hardcf import select_hardcf
from editcollapse.orchestration.flows.hardedit import filter_hardedit, generate_hardedit_candidates
from editcollapse.orchestration.flows.sequential import sequential_editing
from editcollapse.orchestration.flows.sweep import artifact_key, single_edit_sweep
from editcollapse.orchestration.runners import LOCAL
from editcollapse.stages.hardcf.select import HardCFConfig
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.warehouse.store import Warehouse

STAGES = ("sweep", "hardcf", "sequential", "hardedit", "downstream", "analysis")
NEEDS = {"hardcf": "sweep", "sequential": "sweep", "downstream": "sweep"}  # stage → the stage it reads


def _headline(stage: str, result: dict[str, Any]) -> str:
    """The numbers of a stage's result worth a glance in the study table."""
    if stage in ("sweep", "hardcf"):
        return result.headline()
    if stage == "sequential":
        return "; ".join(
            f"{line['group']} trial {line['trial']}: {line['edits']} edits, "
            + ("no collapse" if line["collapsed_at"] is None else f"collapsed at edit {line['collapsed_at']}")
            for line in result["summary"]
        )
    if stage == "hardedit-generate":
        return f"{result.get('unique_valid')} valid candidates of {result.get('records_parsed')} parsed"
    if stage == "hardedit-filter":
        return f"{result['kept']} of {result['candidates']} kept (ppl > {result['threshold']:g})"
    if stage == "downstream":
        return f"{len(result['rows'])} scores, {len(result['failed'])} failed edits; plot {result['plot']}"
    if stage == "analysis":
        return f"{sum(len(rows) for rows in result['tables'].values())} table rows → {result['report']}"
    return ""


@flow(name="editcollapse-study", flow_run_name="study {model} · {method} · {dataset}", log_prints=True)
def editcollapse_study(
    model: str = "smollm2-135m",
    method: str = "rome",
    dataset: str = "geofacts",
    limit: int | None = None,
    shard_size: int = 10,
    ppl_corpus: str = DEFAULT_PPL_CORPUS,
    threshold: float = COLLAPSE_THRESHOLD,
    seed: int = 0,
    warehouse: str | None = None,
    task_runner: str = LOCAL,
    device: str | None = None,
    sequential_edits: int = 20,
    sequential_trials: int = 3,
    hardedit_backend: str = "local",
    hardedit_calls: int = 5,
    hardedit_model: str | None = None,
    hardedit_base_url: str | None = None,
    hardedit_limit: int | None = None,
    downstream_edits: str = "extremes",
    downstream_tasks: list[str] | None = None,
    downstream_limit: int | None = 50,
    downstream_k: int = 2,
    stages: list[str] | None = None,
) -> dict[str, Any]:
    """Run the study's stages as subflows on one warehouse (see the module doc); return each
    stage's summary. ``hardedit_backend``: ``local`` (an offline chat model, ``hardedit_model``,
    default SmolLM2) or ``openai`` (``hardedit_model`` at ``hardedit_base_url`` or the
    ``EDITCOLLAPSE_LLM_*`` variables)."""
    chosen = [stage for stage in STAGES if stage in (stages or STAGES)]
    unknown = set(stages or ()) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(STAGES)}")
    store = Warehouse(warehouse)
    root = store.location
    label = f"{model}-{method}-{dataset}"
    progress = create_progress_artifact(
        0.0, key=artifact_key("study-progress", label), description=f"stages of the study done: {', '.join(chosen)}"
    )
    results: dict[str, Any] = {}
    lines: list[dict[str, Any]] = []
    failed: dict[str, str] = {}

    def run(stage: str, subflow: Any, **parameters: Any) -> dict[str, Any] | None:
        needed = NEEDS.get(stage.split("-")[0])
        if needed in failed:
            lines.append({"stage": stage, "state": "skipped", "result": f"{needed} failed"})
            print(f"{stage}: skipped ({needed} failed)")
            return None
        named = subflow.with_options(flow_run_name=f"{stage} · {model} · {method}")  # readable in the run tree
        state = named(**parameters, return_state=True)
        if state.is_completed():
            result = state.result()
            results[stage] = result
            lines.append({"stage": stage, "state": "completed", "result": _headline(stage, result)})
            print(f"{stage}: {lines[-1]['result']}")
            return result
        failed[stage] = state.message or state.name
        lines.append({"stage": stage, "state": state.name, "result": failed[stage][:300]})
        print(f"{stage}: {state.name} — {failed[stage][:300]}")
        return None

    sweep_run = None
    for done, stage in enumerate(chosen):
        if stage == "sweep":
            sweep = run(
                "sweep",
                single_edit_sweep,
                config=SweepConfig(
                    model=model,
                    method=method,
                    dataset=dataset,
                    limit=limit,
                    shard_size=shard_size,
                    ppl_corpus=ppl_corpus,
                    threshold=threshold,
                    seed=seed,
                    device=device,
                ),
                warehouse=root,
                progress_bar=False,
                task_runner=task_runner,
            )
            sweep_run = sweep.run_id if sweep else None
        elif stage == "hardcf":
            run(
                "hardcf",
                select_hardcf,
                config=HardCFConfig(
                    threshold=threshold, method=method, models=(model,), runs=(sweep_run,) if sweep_run else ()
                ),
                warehouse=root,
            )
        elif stage == "sequential":
            run(
                "sequential",
                sequential_editing,
                model=model,
                method=method,
                hard_source="hardcf",
                dataset=dataset,
                n_edits=sequential_edits,
                trials=sequential_trials,
                seed=seed,
                ppl_corpus=ppl_corpus,
                threshold=threshold,
                warehouse=root,
            )
        elif stage == "hardedit":
            local = hardedit_backend == "local"
            generated = run(
                "hardedit-generate",
                generate_hardedit_candidates,
                backend=hardedit_backend,
                n_calls=hardedit_calls,
                model=None if local else hardedit_model,
                local_model=(hardedit_model if local and hardedit_model else "smollm2-135m"),
                base_url=hardedit_base_url,
                seed=seed,
                warehouse=root,
            )
            if generated is not None and not generated.get("unique_valid"):
                lines.append(
                    {
                        "stage": "hardedit-filter",
                        "state": "skipped",
                        "result": "the generator produced no valid candidate",
                    }
                )
                print("hardedit-filter: skipped (no valid candidate)")
            elif generated is not None:
                run(
                    "hardedit-filter",
                    filter_hardedit,
                    reference_models=[model],
                    method=method,
                    candidate_run_ids=[generated["run_id"]],
                    limit=hardedit_limit,
                    ppl_corpus=ppl_corpus,
                    threshold=threshold,
                    shard_size=shard_size,
                    seed=seed,
                    warehouse=root,
                    device=device,
                )
        elif stage == "downstream":
            run(
                "downstream",
                downstream_eval,
                model=model,
                edits=downstream_edits,
                tasks=downstream_tasks,
                limit=downstream_limit,
                method=method,
                k=downstream_k,
                source_run=sweep_run,
                ppl_corpus=ppl_corpus,
                seed=seed,
                warehouse=root,
                device=device,
            )
        elif stage == "analysis":
            run("analysis", analyse_study, warehouse=root, threshold=threshold)
        update_progress_artifact(progress, 100.0 * (done + 1) / len(chosen))
    create_table_artifact(
        lines,
        key=artifact_key("study-stages", label),
        description=f"the study of {model} / {method} / {dataset} in {root}: one line per stage",
    )
    if failed:
        raise RuntimeError(f"study stage(s) failed: {', '.join(f'{s} ({m})' for s, m in failed.items())}")
    return {"warehouse": root, "stages": lines, "results": results}
