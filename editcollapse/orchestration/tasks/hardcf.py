"""Prefect task of the HardCF selection (a thin wrapper around :mod:`editcollapse.stages.hardcf.select`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from editcollapse.stages.hardcf.select import run_selection
from editcollapse.warehouse.store import Warehouse


@task(name="select-hardcf", cache_policy=NO_CACHE)
def select_hardcf_task(
    warehouse_root: str,
    threshold: float,
    method: str,
    models: Sequence[str] | None,
    run_ids: Sequence[str] | None,
    dataset: str | None,
    output: str | None,
) -> dict[str, Any]:
    """Select, store and export HardCF."""
    return run_selection(
        Warehouse(warehouse_root),
        threshold=threshold,
        method=method,
        models=models,
        run_ids=run_ids,
        dataset=dataset,
        output=output,
    )
