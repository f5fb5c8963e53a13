"""MEND training as a Prefect flow: one task that trains (or resumes) the editor network of a model.

The network lands in the store every sweep reads (``<cache>/mend/<model>/<revision>/<data id>/
<hparams hash>/``, see :mod:`editcollapse.editors.mend.store`); ``get_editor("mend")`` finds it
from the model's hparams. A killed run started again continues from its last checkpoint; a
finished one is reused, not retrained. Artifacts: a progress artifact updated during training, a
table artifact with the held-out numbers and a markdown artifact naming the loss-curve PNG.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.editors.mend.progress import ProgressBar
from editcollapse.orchestration.flows.sweep import artifact_key
from editcollapse.orchestration.tasks.mend import train_mend_task

PROGRESS_EVERY = 5  # iterations between progress-artifact updates (each is an API call)


@flow(name="train-mend", flow_run_name="mend {model} · {dataset}", log_prints=True)
def train_mend(
    model: str = EMBEDDED_MODEL,
    dataset: str | None = None,
    val_dataset: str | None = None,
    max_iters: int | None = None,
    overrides: dict[str, Any] | None = None,
    device: str | None = None,
    resume: bool = True,
    heldout: int = 0,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Train MEND for ``model`` on ``dataset`` (default: the hparams' ``train_data``, the embedded
    geofacts training split) and return the run summary (folder, iterations, held-out losses, time;
    with ``heldout`` > 0 also edit metrics before/after on that many held-out cases).

    ``max_iters`` and ``overrides`` change the hparams, hence the stored network's identity: sweeps
    use the network trained with the packaged hparams.
    """
    overrides = dict(overrides or {})
    if max_iters is not None:
        overrides["max_iters"] = max_iters
    key = artifact_key("mend-progress", f"{model}-{dataset or 'default'}")
    progress_id = create_progress_artifact(0.0, key=key, description=f"MEND training iterations of {model}")
    with ProgressBar(f"MEND {model}", enabled=progress_bar) as bar:

        def on_iteration(iteration: int, total: int, info: dict[str, float]) -> None:
            bar.update(iteration, total, info)
            if iteration % PROGRESS_EVERY == 0 or iteration == total:
                update_progress_artifact(progress_id, 100.0 * iteration / total)

        summary = train_mend_task(
            model, dataset, val_dataset, overrides, device, resume, heldout, on_iteration=on_iteration
        )
    update_progress_artifact(
        progress_id, 100.0 if summary["finished"] else 100.0 * summary["iterations"] / summary["hparams"]["max_iters"]
    )
    _publish(summary, key)
    return summary


def _publish(summary: dict[str, Any], key: str) -> None:
    best, first = summary.get("best_validation", {}), summary.get("first_validation", {})
    rows = [
        {"quantity": k, "value": summary.get(k)}
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
        for metric, value in summary.get("heldout", {}).get(stage, {}).items():
            rows.append({"quantity": f"{stage}-edit {metric}", "value": value})
    create_table_artifact(
        rows, key=key.replace("progress", "summary"), description=f"MEND network of {summary['model']}"
    )
    if summary.get("loss_curve"):
        create_markdown_artifact(
            f"# MEND training of {summary['model']}\n\nloss curve: `{summary['loss_curve']}`"
            f"\n\nnetwork: `{summary['network']}`\n",
            key=key.replace("progress", "curve"),
        )
    print(
        f"MEND {summary['model']}: {summary['iterations']} iterations in {summary['train_time_s']} s; "
        f"network in {summary['folder']}"
    )
