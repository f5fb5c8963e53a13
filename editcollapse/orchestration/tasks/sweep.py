"""Prefect tasks of the single-edit sweep: thin wrappers around :mod:`editcollapse.stages.sweep`.

No caching (``NO_CACHE``): resume is the warehouse's job (a shard whose ``edits`` part exists is
not recomputed), and task inputs (cases, callbacks) are not worth hashing.

Each worker thread keeps its own :class:`~editcollapse.stages.sweep.resources.ResourceCache`, so the
prepare task and the shard tasks a thread runs load the model once, and shards running in parallel
threads never share a model (a shard changes the weights it measures).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from editcollapse.core.case import EditCase
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.resources import ResourceCache
from editcollapse.stages.sweep.run import SweepPlan, finish_sweep, prepare_sweep
from editcollapse.stages.sweep.shard import ShardResult, run_shard
from editcollapse.stages.sweep.summary import SweepResult
from editcollapse.warehouse.store import Warehouse

_thread = threading.local()


def thread_cache() -> ResourceCache:
    """This thread's resource cache (created on its first task)."""
    if not hasattr(_thread, "cache"):
        _thread.cache = ResourceCache()
    return _thread.cache


@task(name="prepare-sweep", cache_policy=NO_CACHE)
def prepare_sweep_task(spec: SweepConfig, warehouse_root: str) -> SweepPlan:
    """Load and shard the cases, start the run, measure the baseline, list missing shards."""
    return prepare_sweep(spec, Warehouse(warehouse_root), cache=thread_cache())


@task(
    name="edit-shard", task_run_name="shard-{shard:05d}", cache_policy=NO_CACHE, tags=["gpu"]
)  # `prefect concurrency-limit create gpu 1`: one editing task per GPU at a time
def edit_shard_task(
    spec: SweepConfig,
    shard: int,
    cases: list[EditCase],
    warehouse_root: str,
    on_case: Callable[[str], None] | None = None,
) -> ShardResult:
    """Load the model once, edit → measure → restore each case of the shard, write its parts."""
    return run_shard(spec, shard, cases, Warehouse(warehouse_root), cache=thread_cache(), on_case=on_case)


@task(name="finish-sweep", cache_policy=NO_CACHE)
def finish_sweep_task(plan: SweepPlan, warehouse_root: str, status: str = "completed") -> SweepResult:
    """Write the final runs row and the DuckDB catalog; return the run's result."""
    return finish_sweep(plan, Warehouse(warehouse_root), status=status)
