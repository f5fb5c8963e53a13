"""Prepare a Prefect server for the study: the process work pool and the ``gpu`` tag limit.

The same as ``prefect work-pool create editcollapse --type process`` plus ``prefect
concurrency-limit create gpu 1``, but idempotent (an existing pool is kept, the limit is set to the
given value), so it can run at every start of a machine.
"""

from __future__ import annotations

POOL = "editcollapse"  # the pool every deployment in prefect.yaml names
GPU_TAG = "gpu"  # the tag of tasks that edit a model on the GPU (the sweep's edit-shard)


def setup_server(pool: str = POOL, gpu_limit: int = 1) -> dict[str, object]:
    """Create ``pool`` (type process) unless it exists and set the ``gpu`` tag limit to
    ``gpu_limit`` concurrent task runs; return what was done. Needs ``PREFECT_API_URL``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    if gpu_limit < 1:
        raise ValueError(f"gpu_limit must be at least 1, got {gpu_limit}")
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool, type=ProcessWorker.type, base_job_template=ProcessWorker.get_default_base_job_template()
                )
            )
            created = True
        except ObjectAlreadyExists:
            created = False
        client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=gpu_limit)
        limit = client.read_concurrency_limit_by_tag(GPU_TAG).concurrency_limit
    return {"pool": pool, "pool_created": created, "tag": GPU_TAG, "limit": limit}
