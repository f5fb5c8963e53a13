"""FT and FT-L∞: fine-tune chosen weights on the new targets, as ROME's baselines define them.

Reference: ``baselines/ft/ft_main.py`` of kmeng01/rome (and EasyEdit's ``ft``). Adam on the
rewrite module's weight of each chosen layer; an epoch runs over the cases in chunks of
``batch_size``, steps only while the batch loss is ≥ 1e-2, and stops once the epoch's mean loss is
below 1e-2. FT-L∞ (Zhu et al. 2020) projects every weight back into the L∞ ball of radius
``norm_constraint`` around its original value after every step.

The model is never mutated: training runs on detached clones of the chosen weights through
:func:`torch.func.functional_call`, and gradients are taken with :func:`torch.autograd.grad` for
those clones only (no ``.grad`` lands on the model's own parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta, ParamDelta
from editcollapse.core.tokens import encode_pair, pad_id_of, pad_right
from editcollapse.editors.ft.hparams import FTHparams
from editcollapse.models.archmap import ArchMap
from editcollapse.models.hooks import model_device

STOP_LOSS = 1e-2  # ROME's FT: no step below this batch loss, stop below this epoch loss


def trained_parameter_names(model: nn.Module, layers: Sequence[int], rewrite_module_tmp: str) -> list[str]:
    """The weights FT trains: ``rewrite_module_tmp`` at each layer (a module's ``.weight`` or a parameter)."""
    available = dict(model.named_parameters())
    names = []
    for layer in layers:
        name = rewrite_module_tmp.format(layer)
        name = name if name in available else f"{name}.weight"
        if name not in available:
            raise ValueError(
                f"FT hparams: rewrite_module_tmp {rewrite_module_tmp!r} at layer "
                f"{layer} names no module weight or parameter of this model"
            )
        names.append(name)
    return names


@dataclass
class TargetBatch:
    """Prompts followed by their targets, right-padded, with where each target sits."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    prompt_lengths: list[int]
    target_ids: list[list[int]]


def target_batch(tokenizer: PreTrainedTokenizerBase, cases: Sequence[EditCase], device: torch.device) -> TargetBatch:
    """Tokenise each case's prompt followed by ``" " + target_new``, right-padded.

    The split into prompt and target tokens is the evaluation's (:func:`encode_pair`), so FT trains
    exactly the tokens the edit metrics score.
    """
    encoded = [encode_pair(tokenizer, case.filled_prompt, case.target_new) for case in cases]
    input_ids, attention_mask = pad_right([p + t for p, t in encoded], pad_id_of(tokenizer), device)
    return TargetBatch(input_ids, attention_mask, [len(p) for p, _ in encoded], [t for _, t in encoded])


def target_loss(logits: torch.Tensor, batch: TargetBatch, objective: str) -> torch.Tensor:
    """Mean over cases of the mean target-token NLL.

    ``target_new``: teacher-forced, token ``t`` scored at the position before it (exact for
    multi-token targets). ``prompt_last``: ROME's original objective, every target token scored at the
    prompt's last position.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    losses = []
    for row, (start, target) in enumerate(zip(batch.prompt_lengths, batch.target_ids, strict=True)):
        ids = torch.tensor(target, device=logits.device)
        if objective == "prompt_last":
            scored = log_probs[row, start - 1, ids]
        else:
            positions = torch.arange(start - 1, start - 1 + len(target), device=logits.device)
            scored = log_probs[row, positions, ids]
        losses.append(-scored.mean())
    return torch.stack(losses).mean()


def fine_tune(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    arch: ArchMap,
    cases: Sequence[EditCase],
    hparams: FTHparams,
    *,
    method: str = "ft",
) -> Delta:
    """Fine-tune the chosen weights on ``cases`` and return the change as a dense :class:`Delta`."""
    if not cases:
        raise ValueError("FT needs at least one case")
    names = trained_parameter_names(model, hparams.layers, hparams.rewrite_module_tmp or arch.rewrite_module_tmp)
    originals = {name: param for name, param in model.named_parameters() if name in names}
    trained = {name: originals[name].detach().clone().requires_grad_(True) for name in names}
    optimizer = torch.optim.Adam(list(trained.values()), lr=float(hparams.lr), weight_decay=float(hparams.weight_decay))
    device = model_device(model)
    chunk = hparams.batch_size or len(cases)
    radius = hparams.linf_radius
    batches = [target_batch(tokenizer, cases[start : start + chunk], device) for start in range(0, len(cases), chunk)]

    epoch_losses: list[float] = []
    steps = 0
    for _ in range(hparams.num_steps):
        total = 0.0
        for batch in batches:
            outputs = functional_call(
                model, trained, args=(), kwargs={"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
            )
            loss = target_loss(outputs.logits, batch, hparams.objective_optimization)
            total += loss.item() * batch.input_ids.shape[0]
            if loss.item() >= STOP_LOSS:
                grads = torch.autograd.grad(loss, list(trained.values()))
                for tensor, grad in zip(trained.values(), grads, strict=True):
                    tensor.grad = grad
                optimizer.step()
                steps += 1
            if radius is not None:
                _project_linf(trained, originals, radius)
        epoch_losses.append(total / len(cases))
        if epoch_losses[-1] < STOP_LOSS:
            break

    params = {name: ParamDelta(dense=(trained[name].detach() - originals[name].detach())) for name in names}
    diagnostics = {
        "epochs": len(epoch_losses),
        "optimizer_steps": steps,
        "first_epoch_loss": epoch_losses[0],
        "last_epoch_loss": epoch_losses[-1],
        "norm_constraint": radius,
        "objective": hparams.objective_optimization,
        "max_abs_change": {name: float(change.dense.abs().max()) for name, change in params.items()},
    }
    return Delta(
        method=method,
        params=params,
        hparams_hash=hparams.hash(),
        case_ids=tuple(case.case_id for case in cases),
        diagnostics=diagnostics,
    )


def _project_linf(trained: dict[str, torch.Tensor], originals: dict[str, torch.Tensor], radius: float) -> None:
    """Clamp each trained weight into [original − radius, original + radius], in place."""
    with torch.no_grad():
        for name, tensor in trained.items():
            original = originals[name].detach()
            torch.clamp(tensor, min=original - radius, max=original + radius, out=tensor)


@dataclass(frozen=True)
class FTEditor:
    """The :class:`~editcollapse.editors.api.Editor` of ``"ft"`` and ``"ft-l-inf"``."""

    method: str

    def edit(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        cases: list[EditCase],
        hparams: FTHparams,
    ) -> Delta:
        """Fine-tune on ``cases``; FT-L∞ refuses hparams without an L∞ bound."""
        if self.method == "ft-l-inf" and hparams.linf_radius is None:
            raise ValueError(
                "ft-l-inf hparams need a numeric norm_constraint (the L∞ radius); "
                f"got {hparams.norm_constraint!r} (model {hparams.model_name or '?'})"
            )
        return fine_tune(model, tokenizer, arch, cases, hparams, method=self.method)


def editor(method: str) -> FTEditor:
    """The FT editor for ``method`` (``"ft"`` or ``"ft-l-inf"``), as :func:`get_editor` asks."""
    if method not in ("ft", "ft-l-inf"):
        raise ValueError(f"editcollapse.editors.ft.editor implements 'ft' and 'ft-l-inf', not {method!r}")
    return FTEditor(method)
