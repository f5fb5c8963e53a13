"""MEND training as a Prefect flow: one task that trains (or resumes) the editor network of a model.

The network lands in the store every sweep reads (``<cache>/mend/<model>/<revision>/<data id>/
<hparams hash>/``, see :mod:`editcollapse.editors.mend.store`); ``get_editor("mend")`` finds it
from the model's hparams. A killed run started again continues from its last checkpoint; a
finished one is reused, not retrained. A progress bar (with the latest losses) and a progress
artifact follow the training iterations; at the end a table artifact with the held-out numbers and
a markdown artifact naming the loss-curve PNG.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from editcollapse.orchestration.flows.sweep import artifact_key
from editcollapse.orchestration.progress import ProgressBar, progress_artifact
from editcollapse.orchestration.run_context import config_run_name, run_logger
from editcollapse.orchestration.tasks.mend import train_mend_task
from editcollapse.stages.mend.config import MENDTrainConfig
from editcollapse.stages.mend.run import MENDTrainResult, losses_text


@flow(name="train-mend", flow_run_name=config_run_name("mend {model} · {dataset}"))
def train_mend(config: MENDTrainConfig = MENDTrainConfig(), progress_bar: bool = True) -> MENDTrainResult:
    """Train MEND for ``config.model`` on ``config.dataset`` (default: the hparams' ``train_data``, the
    embedded geofacts training split) and return the result (folder, iterations, held-out losses, time;
    with ``config.heldout`` > 0 also edit metrics before/after on that many held-out cases)."""
    config.preflight()  # a mistake fails here, with the command line's message, before any training
    key = artifact_key("mend-progress", f"{config.model}-{config.dataset or 'default'}")
    artifact = progress_artifact(key, f"MEND training iterations of {config.model}")
    with ProgressBar(f"MEND {config.model}", enabled=progress_bar, artifact=artifact) as bar:
        result = train_mend_task(config, on_iteration=lambda i, total, info: bar.update(i, total, losses_text(info)))
        total = result.hparams["max_iters"]
        bar.update(total if result.finished else result.iterations, total)  # a reused network: no iterations ran
    _publish(result, key)
    return result


def _publish(result: MENDTrainResult, key: str) -> None:
    best, first, shown = result.best_validation, result.first_validation, result.to_dict()
    rows = [
        {"quantity": k, "value": shown[k]}
        for k in (
            "model",
            "model_revision",
            "data_id",
            "hparams_hash",
            "n_train",
            "n_val",
            "iterations",
            "best_iteration",
            "train_time_s",
            "folder",
        )
    ]
    rows += [
        {
            "quantity": f"held-out {k} (after iteration {first.get('iteration')} → best)",
            "value": f"{first.get(k, float('nan')):.4g} → {best.get(k, float('nan')):.4g}",
        }
        for k in ("loss/edit_val", "loss/loc_val", "edit/acc_val")
        if k in best
    ]
    for stage in ("pre", "post"):
        for metric, value in (result.heldout or {}).get(stage, {}).items():
            rows.append({"quantity": f"{stage}-edit {metric}", "value": value})
    create_table_artifact(rows, key=key.replace("progress", "summary"), description=f"MEND network of {result.model}")
    if result.loss_curve is not None:
        create_markdown_artifact(
            f"# MEND training of {result.model}\n\nloss curve: `{result.loss_curve}`\n\nnetwork: `{result.network}`\n",
            key=key.replace("progress", "curve"),
        )
    run_logger(__name__).info(f"MEND {result.model}: {result.headline()}")
