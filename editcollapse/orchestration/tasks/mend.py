"""Prefect task of MEND training: a thin wrapper around :func:`editcollapse.stages.mend.run.train_named_model`.

No caching (``NO_CACHE``): resume is the checkpoint's job (a run continues from the last
``checkpoint.pt`` in its store folder; a finished run is not retrained).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from editcollapse.stages.mend.run import train_named_model


@task(name="train-mend", cache_policy=NO_CACHE, tags=["gpu"])
def train_mend_task(
    model: str,
    dataset: str | None,
    val_dataset: str | None,
    overrides: dict[str, Any],
    device: str | None,
    resume: bool,
    heldout: int,
    on_iteration: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Load the model, train (or resume, or reuse) its MEND network, optionally measure held-out edits."""
    return train_named_model(
        model,
        dataset=dataset,
        val_dataset=val_dataset,
        overrides=overrides,
        device=device,
        resume=resume,
        heldout=heldout,
        on_iteration=on_iteration,
    )
