"""One GPU, one model-editing job: the ``gpu`` tag limit, for tasks and for flow code.

Every Prefect task that edits or evaluates a model carries the tag ``gpu`` (the sweep's
``edit-shard``, the sequential ``sequential-trajectory``, the downstream ``downstream-evaluate``);
with ``prefect concurrency-limit create gpu 1`` (or ``editcollapse setup-prefect``) the server
lets one such task run at a time across all workers. Prefect 3 keeps a tag limit as the global
concurrency limit ``tag:gpu``, so flow code that uses the GPU outside a task (the HardEdit flows)
takes a slot of the same limit with :func:`gpu_slot`. A server without that limit (the temporary
server of a CLI command) has nothing to hold: :func:`gpu_slot` asks first and runs the block
directly, where Prefect's own ``concurrency(strict=False)`` would log a warning on every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from editcollapse.orchestration.ops.setup import GPU_TAG
from editcollapse.orchestration.run_context import in_prefect_run

GPU_LIMIT = f"tag:{GPU_TAG}"


@contextmanager
def gpu_slot(enabled: bool = True, *, timeout_s: float | None = None) -> Iterator[None]:
    """Hold one slot of the ``gpu`` tag limit while the block runs (waiting for it first). A no-op
    outside a flow or task run (``.fn`` calls: no server to ask), when ``enabled`` is false (e.g. a
    remote LLM backend), or when the server has no ``gpu`` limit."""
    if not enabled or not in_prefect_run() or not _gpu_limit_exists():
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(GPU_LIMIT, occupy=1, timeout_seconds=timeout_s, strict=False):
        yield


def _gpu_limit_exists() -> bool:
    """Whether the server has the ``tag:gpu`` limit (``editcollapse setup-prefect`` creates it)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(GPU_LIMIT)
        except ObjectNotFound:
            return False
    return True
