"""Prefect task of the downstream evaluation: a thin wrapper around :mod:`editcollapse.stages.downstream`.

No caching (``NO_CACHE``): the inputs hold a loaded model, and resume is the warehouse's job (an
edit whose ``downstream`` part exists is not evaluated again).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from editcollapse.orchestration.ops.setup import GPU_TAG
from editcollapse.stages.downstream.evaluate import DownstreamContext, evaluate_ref
from editcollapse.stages.downstream.selection import EditRef


@task(
    name="downstream-evaluate", task_run_name="evaluate-{ref.ref}", cache_policy=NO_CACHE, tags=[GPU_TAG]
)  # one model-editing task per GPU at a time (editcollapse.orchestration.ops.concurrency)
def evaluate_ref_task(ref: EditRef, context: DownstreamContext) -> list[dict[str, Any]]:
    """Rebuild and apply one edit, measure perplexity and every task, restore; the rows."""
    return evaluate_ref(ref, context)
