"""Prefect task of MEND training: a thin wrapper around :func:`editcollapse.stages.mend.run.run_training`.

No caching (``NO_CACHE``): resume is the checkpoint's job (a run continues from the last
``checkpoint.pt`` in its store folder; a finished run is not retrained).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from editcollapse.editors.mend.train import ProgressFn
from editcollapse.stages.mend.config import MENDTrainConfig
from editcollapse.stages.mend.run import MENDTrainResult, run_training


@task(name="train-mend", cache_policy=NO_CACHE, tags=["gpu"])
def train_mend_task(config: MENDTrainConfig, on_iteration: ProgressFn | None = None) -> MENDTrainResult:
    """Load the model, train (or resume, or reuse) its MEND network, optionally measure held-out edits."""
    return run_training(config, on_iteration=on_iteration)
