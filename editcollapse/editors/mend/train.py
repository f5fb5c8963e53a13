"""Training MEND's editor network (pure functions; :mod:`editcollapse.orchestration.flows.mend` wraps them in Prefect).

One iteration edits ``batch_size`` training cases at once, each with its own edit (MEND's
``edit_step``, reference ``trainer.py`` of eric-mitchell/mend):

1. one forward on the edit sequences (prompt + target_new) and the locality sequences gives every
   case's gradient factors and the unedited model's locality logits;
2. the network turns the factors into each case's edit ``ΔW = −α Σ δ̃ x̃ᵀ``;
3. one forward with every row under its own case's edit gives
   ``L = c_edit · L_edit + c_loc · L_loc``: ``L_edit`` the target NLL on the equivalence prompts
   (paraphrases), ``L_loc`` the KL(pre ‖ post) over the locality sequences' tokens;
4. ``L`` is backpropagated into the network and the edit lrs (Adam at ``lr`` and ``lr_lr``), with
   gradient clipping, every ``accumulate_bs`` iterations.

Validation runs the same step without learning on held-out cases. The training state is
checkpointed atomically, and a run resumes from its checkpoint with the same result as an
uninterrupted one (the data order and every sampled prompt are functions of the seed and the
iteration).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.editors.mend.core import (
    Target,
    capture_factors,
    edited_forward,
    encode_rows,
    kl_rows,
    resolve_targets,
    row_accuracy,
    row_nll,
    transform_factors,
)
from editcollapse.editors.mend.data import MENDData
from editcollapse.editors.mend.hparams import MENDHparams
from editcollapse.editors.mend.network import MENDNetwork
from editcollapse.editors.mend.store import CHECKPOINT_FILE, NETWORK_FILE, save_network
from editcollapse.models.hooks import model_device

EARLY_STOP_KEY = "loss/total_edit_val"


def build_network(model: nn.Module, settings: MENDHparams) -> tuple[MENDNetwork, list[Target]]:
    """A fresh network for ``settings.inner_params`` of ``model`` (seeded by ``settings.seed``)."""
    from editcollapse.models.archmap import arch_map_for

    targets = resolve_targets(model, settings.params_for(arch_map_for(model).family))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        network = MENDNetwork(
            {t.param: (t.x_dim, t.delta_dim) for t in targets},
            rank=settings.rank,
            n_hidden=settings.n_hidden,
            combine=settings.combine,
            norm=settings.norm,
            shared=settings.shared,
            edit_lr=settings.edit_lr,
        )
    device = model_device(model)
    return network.to(device), targets


def equivalence_prompts(case: EditCase, settings: MENDHparams, rng: random.Random) -> list[str]:
    """The prompts ``L_edit`` is measured on for ``case``: one sampled paraphrase (the reference's
    ``edit_outer`` rephrase), after the edit prompt itself with ``equivalence: edit+paraphrase``;
    the edit prompt when the case has no paraphrase."""
    prompts = [rng.choice(case.paraphrase_prompts)] if case.paraphrase_prompts else []
    if settings.equivalence == "edit+paraphrase" or not prompts:
        prompts.insert(0, case.filled_prompt)
    return prompts


def edit_step(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    targets: Sequence[Target],
    network: MENDNetwork,
    cases: Sequence[EditCase],
    settings: MENDHparams,
    rng: random.Random,
    *,
    training: bool,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Edit each of ``cases`` independently and return (the total loss, its parts and accuracies)."""
    device = model_device(model)
    network.train(training)
    locality = []  # (case index, prompt, target)
    for index, case in enumerate(cases):
        for neighbor in rng.sample(list(case.neighborhood), min(settings.loc_per_case, len(case.neighborhood))):
            locality.append((index, neighbor.prompt, neighbor.target))
    n_edit = len(cases)
    capture = encode_rows(
        tokenizer, [(c.filled_prompt, c.target_new) for c in cases] + [(p, t) for _, p, t in locality], device
    )
    factors, pre_logits = capture_factors(model, targets, capture, list(range(n_edit)))
    with torch.set_grad_enabled(training):
        transformed = transform_factors(network, factors)
        equivalence = [
            (index, prompt, case.target_new)
            for index, case in enumerate(cases)
            for prompt in equivalence_prompts(case, settings, rng)
        ]
        post = encode_rows(tokenizer, [(p, t) for _, p, t in equivalence] + [(p, t) for _, p, t in locality], device)
        row_case = torch.tensor([i for i, _, _ in equivalence] + [i for i, _, _ in locality], device=device)
        with edited_forward(model, targets, network, transformed, row_case):
            post_logits = model(input_ids=post.input_ids, attention_mask=post.attention_mask, use_cache=False).logits
        equivalence_rows = list(range(len(equivalence)))
        l_edit = row_nll(post_logits, post, equivalence_rows).mean()
        kls = []
        for j in range(len(locality)):
            length = int(capture.attention_mask[n_edit + j].sum())
            kls.append(
                kl_rows(
                    pre_logits[n_edit + j : n_edit + j + 1, :length],
                    post_logits[len(equivalence) + j : len(equivalence) + j + 1, :length],
                    post.attention_mask[len(equivalence) + j : len(equivalence) + j + 1, :length],
                )
            )
        l_loc = torch.cat(kls).mean() if kls else torch.zeros((), device=device)
        total = settings.cedit * l_edit + settings.cloc * l_loc
    info = {
        "loss/edit": l_edit.item(),
        "loss/loc": l_loc.item(),
        "loss/total_edit": total.item(),
        "edit/acc": sum(row_accuracy(post_logits.detach(), post, equivalence_rows)) / len(equivalence_rows),
    }
    return total, info


@dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped."""

    iteration: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # one row per iteration (and validation)
    best_value: float = math.inf
    best_iteration: int = -1
    elapsed_s: float = 0.0
    stopped_early: bool = False


def _order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
    return order


def batch_for(iteration: int, n_cases: int, settings: MENDHparams) -> list[int]:
    """The training case indices of ``iteration`` (epoch-wise seeded shuffles)."""
    indices = []
    for k in range(settings.batch_size):
        flat = iteration * settings.batch_size + k
        epoch, position = divmod(flat, n_cases)
        indices.append(_order(n_cases, settings.seed, epoch)[position])
    return indices


def validate(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    targets: Sequence[Target],
    network: MENDNetwork,
    cases: Sequence[EditCase],
    settings: MENDHparams,
) -> dict[str, float]:
    """Held-out losses and edit accuracy (means over ``cases``; no learning, no statistics update)."""
    totals: dict[str, float] = {}
    for start in range(0, len(cases), settings.batch_size):
        chunk = cases[start : start + settings.batch_size]
        _, info = edit_step(
            model,
            tokenizer,
            targets,
            network,
            chunk,
            settings,
            random.Random(f"{settings.seed}:val:{start}"),
            training=False,
        )
        for key, value in info.items():
            totals[key] = totals.get(key, 0.0) + value * len(chunk)
    return {f"{key}_val": value / len(cases) for key, value in totals.items()}


def validation_cases(data: MENDData, settings: MENDHparams) -> list[EditCase]:
    """The fixed held-out subset validated during training (``val_steps`` cases, seeded)."""
    cases = list(data.val)
    random.Random(f"{settings.seed}:val").shuffle(cases)
    return cases[: settings.val_steps]


def _save_checkpoint(
    run_dir: Path, network: MENDNetwork, optimizers: Sequence[torch.optim.Optimizer], state: TrainState
) -> None:
    import os

    payload = {
        "network": network.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers],
        "state": state.__dict__,
    }
    temporary = run_dir / (CHECKPOINT_FILE + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, run_dir / CHECKPOINT_FILE)


def _load_checkpoint(
    run_dir: Path, network: MENDNetwork, optimizers: Sequence[torch.optim.Optimizer]
) -> TrainState | None:
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        return None
    payload = torch.load(path, map_location=network.edit_lrs.device, weights_only=False)
    network.load_state_dict(payload["network"])
    for optimizer, saved in zip(optimizers, payload["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    return TrainState(**payload["state"])


ProgressFn = Callable[[int, int, dict[str, float]], None]


def train_network(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    settings: MENDHparams,
    data: MENDData,
    run_dir: Path | str,
    *,
    resume: bool = True,
    stop_after: int | None = None,
    on_iteration: ProgressFn | None = None,
) -> tuple[MENDNetwork, TrainState]:
    """Train (or resume training) a network in ``run_dir``; the best network lands in ``network.safetensors``.

    ``stop_after`` ends this call after that many iterations (the run stays resumable: a test's
    stand-in for a kill). ``on_iteration(iteration, max_iters, info)`` reports progress.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    network, targets = build_network(model, settings)
    optimizers = [
        torch.optim.Adam(network.network_parameters(), lr=settings.lr),
        torch.optim.Adam([network.edit_lrs], lr=settings.lr_lr),
    ]
    state = (_load_checkpoint(run_dir, network, optimizers) if resume else None) or TrainState()
    if not resume:
        for stale in (CHECKPOINT_FILE, NETWORK_FILE):
            (run_dir / stale).unlink(missing_ok=True)
    val_cases = validation_cases(data, settings)
    parameters = network.network_parameters() + [network.edit_lrs]
    was_training = model.training
    model.eval()
    started, ran = time.monotonic(), 0
    base_elapsed = state.elapsed_s
    try:
        while state.iteration < settings.max_iters and not state.stopped_early:
            if stop_after is not None and ran >= stop_after:
                break
            iteration = state.iteration
            cases = [data.train[i] for i in batch_for(iteration, len(data.train), settings)]
            loss, info = edit_step(
                model,
                tokenizer,
                targets,
                network,
                cases,
                settings,
                random.Random(f"{settings.seed}:iter:{iteration}"),
                training=True,
            )
            (loss / settings.accumulate_bs).backward(inputs=parameters)
            if (iteration + 1) % settings.accumulate_bs == 0:
                info["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip))
                for optimizer in optimizers:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            info["edit_lr/mean"] = float(network.edit_lrs.detach().mean())
            state.history.append({"iteration": iteration, **info})
            state.iteration = iteration + 1
            ran += 1
            state.elapsed_s = base_elapsed + time.monotonic() - started
            if iteration % settings.val_interval == 0:  # as the reference: after iteration 0, every val_interval
                _validate_and_keep_best(model, tokenizer, targets, network, val_cases, settings, state, run_dir)
            if on_iteration is not None:
                on_iteration(state.iteration, settings.max_iters, info)
            boundary = state.iteration % settings.accumulate_bs == 0
            if boundary and (state.iteration % settings.model_save_pt == 0 or state.iteration == settings.max_iters):
                _save_checkpoint(run_dir, network, optimizers, state)
        if state.iteration >= settings.max_iters or state.stopped_early:
            if not any(row.get("iteration") == state.iteration and EARLY_STOP_KEY in row for row in state.history):
                _validate_and_keep_best(
                    model, tokenizer, targets, network, val_cases, settings, state, run_dir, final=True
                )
                ran += 1
            if ran:  # a finished run found again is left as it is
                state.elapsed_s = base_elapsed + time.monotonic() - started
                _save_checkpoint(run_dir, network, optimizers, state)
        elif state.iteration % settings.accumulate_bs == 0:
            _save_checkpoint(run_dir, network, optimizers, state)
    finally:
        model.train(was_training)
    return network, state


def _validate_and_keep_best(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    targets: Sequence[Target],
    network: MENDNetwork,
    val_cases: Sequence[EditCase],
    settings: MENDHparams,
    state: TrainState,
    run_dir: Path,
    final: bool = False,
) -> None:
    stats = validate(model, tokenizer, targets, network, val_cases, settings)
    state.history.append({"iteration": state.iteration, **stats})
    value = stats[EARLY_STOP_KEY]
    if value < state.best_value:
        state.best_value, state.best_iteration = value, state.iteration
        save_network(network, run_dir / NETWORK_FILE)
    elif not final and state.iteration - state.best_iteration >= settings.early_stop_patience:
        state.stopped_early = True


def summarise(state: TrainState) -> dict[str, Any]:
    """The numbers ``meta.json`` keeps: iterations, best held-out stats, time."""
    validations = [row for row in state.history if EARLY_STOP_KEY in row]
    best = next((row for row in validations if row["iteration"] == state.best_iteration), {})
    return {
        "iterations": state.iteration,
        "best_iteration": state.best_iteration,
        "stopped_early": state.stopped_early,
        "train_time_s": round(state.elapsed_s, 1),
        "first_validation": validations[0] if validations else {},
        "best_validation": best,
        "last_validation": validations[-1] if validations else {},
    }


def plot_loss_curve(state: TrainState, path: Path, title: str) -> Path:
    """Training losses (running mean) and held-out validation losses against iterations, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [row for row in state.history if "loss/total_edit" in row]
    val = [row for row in state.history if EARLY_STOP_KEY in row]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, key in zip(axes, ("loss/edit", "loss/loc", "loss/total_edit"), strict=True):
        if train:
            xs = [row["iteration"] for row in train]
            ys = [row[key] for row in train]
            window = max(1, len(ys) // 50)
            smooth = [
                sum(ys[max(0, i - window + 1) : i + 1]) / len(ys[max(0, i - window + 1) : i + 1])
                for i in range(len(ys))
            ]
            axis.plot(xs, smooth, label=f"train (running mean of {window})", color="tab:blue")
        if val:
            axis.plot(
                [row["iteration"] for row in val],
                [row[f"{key}_val"] for row in val],
                "o-",
                label="held-out",
                color="tab:orange",
            )
        axis.set_title(key)
        axis.set_xlabel("iteration")
        axis.set_yscale("log" if key != "loss/loc" else "symlog", **({} if key != "loss/loc" else {"linthresh": 1e-3}))
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
