"""HardCF as a Prefect flow: the cases whose single edit collapsed any model (paper: 107 of
CounterFact under ROME on GPT-2-XL, GPT-J and Llama-2-7B), stored and exported as JSON."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from editcollapse.core.collapse import COLLAPSE_THRESHOLD
from editcollapse.orchestration.flows.sweep import artifact_key
from editcollapse.orchestration.tasks.hardcf import select_hardcf_task
from editcollapse.warehouse.store import Warehouse


@flow(name="select-hardcf", log_prints=True)
def select_hardcf(
    threshold: float = COLLAPSE_THRESHOLD,
    method: str = "rome",
    models: list[str] | None = None,
    runs: list[str] | None = None,
    dataset: str | None = None,
    warehouse: str | None = None,
    output: str | None = None,
) -> dict[str, Any]:
    """Select HardCF from the warehouse's single-edit sweeps (all, or those of ``models`` /
    ``runs``); store the ``hardcf`` rows and write the JSON export; return a summary."""
    root = str(Warehouse(warehouse).root)
    summary = select_hardcf_task(root, threshold, method, models, runs, dataset, output)
    table = [
        {"model": model, "cases swept": c["swept"], f"collapsed (ppl > {threshold:g} or NaN/inf)": c["collapsed"]}
        for model, c in sorted(summary["per_model"].items())
    ]
    table.append(
        {
            "model": "any (HardCF)",
            "cases swept": None,
            f"collapsed (ppl > {threshold:g} or NaN/inf)": summary["n_hard_cases"],
        }
    )
    create_table_artifact(
        table,
        key=artifact_key("hardcf", summary["run_id"]),
        description=f"HardCF selection {summary['run_id']} → {summary['json']}",
    )
    print(
        f"HardCF {summary['run_id']}: {summary['n_hard_cases']} cases from {len(summary['source_runs'])} "
        f"sweeps; JSON {summary['json']}"
    )
    summary.pop("records")
    return summary
