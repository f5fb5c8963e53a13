"""HardCF as a Prefect flow: the cases whose single edit collapsed any model (paper: 107 of
CounterFact under ROME on GPT-2-XL, GPT-J and Llama-2-7B), stored and exported as JSON."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from editcollapse.orchestration.flows.sweep import artifact_key
from editcollapse.orchestration.run_context import run_logger
from editcollapse.orchestration.tasks.hardcf import select_hardcf_task
from editcollapse.stages.hardcf.config import HardCFConfig
from editcollapse.stages.hardcf.select import HardCFResult
from editcollapse.warehouse.store import Warehouse


@flow(name="select-hardcf")
def select_hardcf(config: HardCFConfig = HardCFConfig(), warehouse: str | None = None) -> HardCFResult:
    """Select HardCF from the warehouse's single-edit sweeps (all, or those of ``config.models`` /
    ``config.runs``); store the ``hardcf`` rows and write the JSON export."""
    result = select_hardcf_task(config, Warehouse(warehouse).location)
    collapsed = f"collapsed (ppl > {config.threshold:g} or NaN/inf)"
    table = [
        {"model": model, "cases swept": c["swept"], collapsed: c["collapsed"]}
        for model, c in sorted(result.per_model.items())
    ]
    table.append({"model": "any (HardCF)", "cases swept": None, collapsed: result.n_hard_cases})
    create_table_artifact(
        table, key=artifact_key("hardcf", result.run_id), description=f"HardCF selection {result.run_id}"
    )
    run_logger(__name__).info(f"HardCF {result.run_id}: {result.headline()}")
    return result
