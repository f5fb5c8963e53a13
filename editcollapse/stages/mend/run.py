"""Train MEND for a loaded model and store it where every sweep finds it; measure it on held-out cases."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from editcollapse.editors.api import hparams_for
from editcollapse.editors.mend.data import MENDData, load_mend_data
from editcollapse.editors.mend.hparams import MENDHparams
from editcollapse.editors.mend.store import META_FILE, NETWORK_FILE, network_dir, read_meta, write_json
from editcollapse.editors.mend.train import ProgressFn, plot_loss_curve, summarise, train_network
from editcollapse.stages.mend.config import MENDTrainConfig
from editcollapse.stages.result import StageResult, bulky


def mend_hparams(
    loaded: Any, overrides: dict[str, Any] | None = None, dataset: str | None = None, path: str | None = None
) -> MENDHparams:
    """The model's MEND hparams (the packaged file, or the one at ``path``) with ``overrides`` (YAML keys;
    and ``train_data`` = ``dataset`` when given)."""
    changes = dict(overrides or {})
    if dataset is not None:
        changes["train_data"] = dataset
    return hparams_for(loaded, "mend", path).updated(changes)


def train_for_model(
    loaded: Any,
    hparams: MENDHparams,
    *,
    data: MENDData | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    on_iteration: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train (or resume) the network of ``hparams`` for ``loaded`` in its store folder; return a summary.

    The folder is keyed by model, revision, data id and the training hparams' hash
    (:func:`~editcollapse.editors.mend.store.network_dir`); a finished run leaves ``network.safetensors``,
    ``meta.json``, ``history.json`` and ``loss_curve.png`` there.
    """
    data = data or load_mend_data(hparams)
    folder = network_dir(loaded.name, loaded.revision, data.data_id, hparams)
    network, state = train_network(
        loaded.model,
        loaded.tokenizer,
        hparams,
        data,
        folder,
        resume=resume,
        stop_after=stop_after,
        on_iteration=on_iteration,
    )
    finished = state.iteration >= hparams.max_iters or state.stopped_early
    summary = {
        "model": loaded.name,
        "model_revision": loaded.revision,
        "data_id": data.data_id,
        "n_train": len(data.train),
        "n_val": len(data.val),
        "hparams_hash": hparams.training_hash(),
        "hparams": hparams.training_dict(),
        "folder": str(folder),
        "finished": finished,
        "device": str(loaded.device),
        "torch_threads": torch.get_num_threads(),
        "edit_lrs": network.edit_lrs.detach().cpu().tolist(),
        **summarise(state),
    }
    if finished:
        write_json(folder / "history.json", state.history)
        plot_loss_curve(
            state,
            folder / "loss_curve.png",
            f"MEND · {loaded.name} · {data.data_id} · hparams {hparams.training_hash()}",
        )
        summary["loss_curve"] = str(folder / "loss_curve.png")
        summary["network"] = str(folder / NETWORK_FILE)
        summary["trained_at"] = read_meta(folder).get("trained_at") or time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
        )
        write_json(folder / META_FILE, summary)
    return summary


@dataclass(frozen=True)
class MENDTrainResult(StageResult):
    """A trained (or resumed, or reused) MEND network: where it is stored, how it trained, and with
    ``heldout`` > 0 the edit metrics before/after on held-out cases. ``loss_curve``, ``network`` and
    ``trained_at`` are set once training finished; ``heldout`` only when it was measured."""

    model: str
    model_revision: str
    data_id: str
    n_train: int
    n_val: int
    hparams_hash: str
    hparams: dict[str, Any] = bulky()  # every training hparam (the hash's input)
    folder: Path
    finished: bool
    device: str
    torch_threads: int
    edit_lrs: tuple[float, ...]
    iterations: int
    best_iteration: int
    stopped_early: bool
    train_time_s: float
    first_validation: dict[str, float]
    best_validation: dict[str, float]
    last_validation: dict[str, float]
    loss_curve: Path | None = None
    network: Path | None = None
    trained_at: str | None = None
    heldout: dict[str, Any] | None = None  # evaluate_heldout's means: n_cases, pre, post, seconds_per_edit

    def headline(self) -> str:
        return f"{self.iterations} iterations in {self.train_time_s} s → {self.folder}"


def losses_text(info: dict[str, float]) -> str:
    """The latest training losses, shown beside the progress bar."""
    return f"edit {info.get('loss/edit', float('nan')):.3f} loc {info.get('loss/loc', float('nan')):.4f}"


def run_training(config: MENDTrainConfig, *, on_iteration: ProgressFn | None = None) -> MENDTrainResult:
    """Load ``config.model``, train (or resume, or reuse) its MEND network in the cache's store; with
    ``config.heldout`` > 0 also edit and measure that many held-out cases. No warehouse: the network
    lives in the cache, where ``get_editor("mend")`` finds it."""
    from editcollapse.models import load_model

    loaded = load_model(config.model, device=config.device)
    changes = dict(config.overrides)
    if config.max_iters is not None:
        changes["max_iters"] = config.max_iters
    if config.val_dataset is not None:
        changes["val_data"] = config.val_dataset
    hparams = mend_hparams(loaded, changes, config.dataset, config.hparams_file)
    data = load_mend_data(hparams)
    summary = train_for_model(loaded, hparams, data=data, resume=config.resume, on_iteration=on_iteration)
    heldout = None
    if config.heldout > 0 and summary["finished"]:
        cases = list(data.val)
        random.Random(1).shuffle(cases)
        heldout = evaluate_heldout(loaded, hparams, cases[: config.heldout])
    return MENDTrainResult(
        **{
            **summary,
            "folder": Path(summary["folder"]),
            "edit_lrs": tuple(summary["edit_lrs"]),
            "loss_curve": _path(summary.get("loss_curve")),
            "network": _path(summary.get("network")),
        },
        heldout=heldout,
    )


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def evaluate_heldout(loaded: Any, hparams: MENDHparams, cases: list, *, folder: Path | None = None) -> dict[str, Any]:
    """Edit metrics before and after MEND's edit (one case at a time, the stored network) on ``cases``.

    Returns per-metric means: ``pre``/``post`` efficacy, paraphrase and neighborhood success (ROME's
    probability comparisons), rewrite/rephrase token accuracy, and seconds per edit.
    """
    from editcollapse.editors.api import get_editor
    from editcollapse.evaluation.edit_metrics import measure_cases

    if folder is not None:
        hparams = replace(hparams, mend_network=str(folder))
    editor = get_editor("mend")
    pre = measure_cases(loaded.model, loaded.tokenizer, cases)
    post, seconds = [], 0.0
    for case in cases:
        started = time.monotonic()
        delta = editor.edit(loaded.model, loaded.tokenizer, loaded.arch, [case], hparams)
        seconds += time.monotonic() - started
        with delta.applied(loaded.model):
            post.append(measure_cases(loaded.model, loaded.tokenizer, [case])[0])

    def mean(rows: list[dict[str, float]], key: str) -> float | None:
        values = [row[key] for row in rows if key in row]
        return sum(values) / len(values) if values else None

    keys = (
        "efficacy_success",
        "paraphrase_success",
        "neighborhood_success",
        "rewrite_acc",
        "rephrase_acc",
        "neighborhood_acc",
    )
    return {
        "n_cases": len(cases),
        "pre": {k: mean(pre, k) for k in keys},
        "post": {k: mean(post, k) for k in keys},
        "seconds_per_edit": seconds / max(1, len(cases)),
    }
