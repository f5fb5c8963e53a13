"""Prefect task of the screen (a thin wrapper around :func:`editcollapse.stages.screen.run.run_screen`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from editcollapse.orchestration.ops.setup import GPU_TAG
from editcollapse.stages.progress import OnProgress, ignore_progress
from editcollapse.stages.screen.config import ScreenConfig
from editcollapse.stages.screen.run import ScreenResult, run_screen
from editcollapse.warehouse.store import Warehouse


@task(name="screen-cases", cache_policy=NO_CACHE, tags=[GPU_TAG])  # runs the model: one per GPU at a time
def screen_task(config: ScreenConfig, warehouse_root: str, on_progress: OnProgress = ignore_progress) -> ScreenResult:
    """Screen the cases the warehouse lacks; resume is the warehouse's job (stored shards are skipped)."""
    return run_screen(config, Warehouse(warehouse_root), on_progress=on_progress)
