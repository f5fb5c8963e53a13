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
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta, ParamDelta
from editcollapse.core.tokens import encode_pair, pad_id_of, pad_right
from editcollapse.editors.api import hparams_hash, require_keys
from editcollapse.models.archmap import ArchMap

STOP_LOSS = 1e-2  # ROME's FT: no step below this batch loss, stop below this epoch loss
OBJECTIVES = ("prompt_last", "target_new")


@dataclass(frozen=True)
class FTSettings:
    """The FT hyperparameters this implementation reads (EasyEdit key names)."""

    layers: tuple[int, ...]
    num_steps: int
    lr: float
    weight_decay: float
    norm_constraint: float | None
    batch_size: int
    objective: str
    rewrite_module_tmp: str

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any], arch: ArchMap) -> FTSettings:
        """Validate ``hparams`` (a loaded YAML) and fill defaults from the architecture map."""
        require_keys(hparams, ("layers", "num_steps", "lr"), "FT")
        if float(hparams.get("kl_factor", 0) or 0) != 0:
            raise ValueError("FT hparams: kl_factor must be 0 (ROME's FT baseline defines no KL term)")
        constraint = hparams.get("norm_constraint", False)
        if constraint is not False and constraint is not None:
            constraint = float(constraint)
            if constraint <= 0:
                raise ValueError(f"FT hparams: norm_constraint must be > 0 or false, got {constraint}")
        else:
            constraint = None
        objective = hparams.get("objective_optimization", "prompt_last")
        if objective not in OBJECTIVES:
            raise ValueError(f"FT hparams: objective_optimization {objective!r} not in {OBJECTIVES}")
        return cls(
            layers=tuple(int(layer) for layer in hparams["layers"]),
            num_steps=int(hparams["num_steps"]),
            lr=float(hparams["lr"]),
            weight_decay=float(hparams.get("weight_decay", 0) or 0),
            norm_constraint=constraint,
            batch_size=int(hparams.get("batch_size", 0) or 0),
            objective=objective,
            rewrite_module_tmp=hparams.get("rewrite_module_tmp", arch.rewrite_module_tmp),
        )


def trained_parameter_names(model: nn.Module, settings: FTSettings) -> list[str]:
    """The weights FT trains: ``rewrite_module_tmp`` at each layer (a module's ``.weight`` or a parameter)."""
    available = dict(model.named_parameters())
    names = []
    for layer in settings.layers:
        name = settings.rewrite_module_tmp.format(layer)
        name = name if name in available else f"{name}.weight"
        if name not in available:
            raise ValueError(
                f"FT hparams: rewrite_module_tmp {settings.rewrite_module_tmp!r} at layer "
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
    hparams: dict[str, Any],
    *,
    method: str = "ft",
) -> Delta:
    """Fine-tune the chosen weights on ``cases`` and return the change as a dense :class:`Delta`."""
    if not cases:
        raise ValueError("FT needs at least one case")
    settings = FTSettings.from_hparams(hparams, arch)
    names = trained_parameter_names(model, settings)
    originals = {name: param for name, param in model.named_parameters() if name in names}
    trained = {name: originals[name].detach().clone().requires_grad_(True) for name in names}
    optimizer = torch.optim.Adam(list(trained.values()), lr=settings.lr, weight_decay=settings.weight_decay)
    device = next(model.parameters()).device
    chunk = settings.batch_size or len(cases)
    batches = [target_batch(tokenizer, cases[start : start + chunk], device) for start in range(0, len(cases), chunk)]

    epoch_losses: list[float] = []
    steps = 0
    for _ in range(settings.num_steps):
        total = 0.0
        for batch in batches:
            outputs = functional_call(
                model, trained, args=(), kwargs={"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
            )
            loss = target_loss(outputs.logits, batch, settings.objective)
            total += loss.item() * batch.input_ids.shape[0]
            if loss.item() >= STOP_LOSS:
                grads = torch.autograd.grad(loss, list(trained.values()))
                for tensor, grad in zip(trained.values(), grads, strict=True):
                    tensor.grad = grad
                optimizer.step()
                steps += 1
            if settings.norm_constraint is not None:
                _project_linf(trained, originals, settings.norm_constraint)
        epoch_losses.append(total / len(cases))
        if epoch_losses[-1] < STOP_LOSS:
            break

    params = {name: ParamDelta(dense=(trained[name].detach() - originals[name].detach())) for name in names}
    diagnostics = {
        "epochs": len(epoch_losses),
        "optimizer_steps": steps,
        "first_epoch_loss": epoch_losses[0],
        "last_epoch_loss": epoch_losses[-1],
        "norm_constraint": settings.norm_constraint,
        "objective": settings.objective,
        "max_abs_change": {name: float(change.dense.abs().max()) for name, change in params.items()},
    }
    return Delta(
        method=method,
        params=params,
        hparams_hash=hparams_hash(hparams),
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
        hparams: dict[str, Any],
    ) -> Delta:
        """Fine-tune on ``cases``; FT-L∞ refuses hparams without an L∞ bound."""
        if self.method == "ft-l-inf" and hparams.get("norm_constraint") in (None, False):
            raise ValueError(
                "ft-l-inf hparams need a numeric norm_constraint (the L∞ radius); "
                f"got {hparams.get('norm_constraint')!r} (model {hparams.get('model_name', '?')})"
            )
        return fine_tune(model, tokenizer, arch, cases, hparams, method=self.method)


def editor(method: str) -> FTEditor:
    """The FT editor for ``method`` (``"ft"`` or ``"ft-l-inf"``), as :func:`get_editor` asks."""
    if method not in ("ft", "ft-l-inf"):
        raise ValueError(f"editcollapse.editors.ft.editor implements 'ft' and 'ft-l-inf', not {method!r}")
    return FTEditor(method)
