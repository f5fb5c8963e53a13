"""Prefect task of the HardCF selection (a thin wrapper around :mod:`editcollapse.stages.hardcf.select`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from editcollapse.stages.hardcf.config import HardCFConfig
from editcollapse.stages.hardcf.select import HardCFResult, run_selection
from editcollapse.warehouse.store import Warehouse


@task(name="select-hardcf", cache_policy=NO_CACHE)
def select_hardcf_task(config: HardCFConfig, warehouse_root: str) -> HardCFResult:
    """Select, store and export HardCF."""
    return run_selection(config, Warehouse(warehouse_root))
