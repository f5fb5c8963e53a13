"""MEND's mechanics on a transformers model: gradient factors, the edited forward and the `Delta`.

* :func:`capture_factors` runs the model once on edit sequences and returns, for every edited
  matrix and every sequence, the per-token inputs ``x_t`` of its module and the gradients
  ``δ_t = ∂L/∂out_t`` of the sequence's own edit loss at the module's output (zero-valued probes
  added to the module outputs carry the gradient, so the model's parameters get no ``.grad`` and
  need not require one). Rows of the same batch are independent, so one batched forward yields
  each sequence's own factors.
* :func:`transform_factors` feeds them through the :class:`MENDNetwork`.
* :class:`edited_forward` adds each row's own edit ``ΔW_b = −α_l Σ_t δ̃_t x̃_tᵀ`` to the module
  outputs as ``−α_l (x X̃_bᵀ) Δ̃_b``, never materialising ``ΔW`` — MEND's training and validation
  run many independent edits in one batched forward this way.
* :func:`factors_to_delta` writes the same edit as a low-rank :class:`Delta` in the parameter's own
  layout (``nn.Linear``: ``(out, in)``; GPT-2's ``Conv1D``: ``(in, out)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.delta import ParamDelta
from editcollapse.core.tokens import encode_pair, pad_id_of, pad_right
from editcollapse.editors.mend.network import MENDNetwork


@dataclass(frozen=True)
class Target:
    """An edited matrix: its parameter, its module and the module's input/output widths."""

    param: str
    module_name: str
    x_dim: int
    delta_dim: int
    transposed: bool  # GPT-2's Conv1D stores (in, out)


def resolve_targets(model: nn.Module, inner_params: Sequence[str]) -> list[Target]:
    """The :class:`Target` of each ``inner_params`` name (full parameter names ending in ``.weight``)."""
    available = dict(model.named_parameters())
    targets = []
    for name in inner_params:
        if name not in available:
            raise ValueError(f"MEND hparams: inner_params names {name!r}, not a parameter of this model")
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name)
        weight = available[name]
        if leaf != "weight" or weight.dim() != 2:
            raise ValueError(f"MEND edits 2-d module weights; {name!r} is not one")
        transposed = type(module).__name__ == "Conv1D"
        if not transposed and not isinstance(module, nn.Linear):
            raise ValueError(f"MEND edits nn.Linear or Conv1D weights; {module_name} is {type(module).__name__}")
        x_dim, delta_dim = (weight.shape[0], weight.shape[1]) if transposed else (weight.shape[1], weight.shape[0])
        targets.append(Target(name, module_name, int(x_dim), int(delta_dim), transposed))
    return targets


@dataclass
class SeqBatch:
    """Right-padded sequences (prompt + target) and where each target's tokens are predicted."""

    input_ids: torch.Tensor  # (R, T)
    attention_mask: torch.Tensor  # (R, T)
    label_positions: list[list[int]]  # per row: positions whose logits predict the target tokens
    label_ids: list[list[int]]

    @property
    def n_rows(self) -> int:
        return self.input_ids.shape[0]


def encode_rows(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]], device: torch.device) -> SeqBatch:
    """``prompt + " " + target`` for each pair, tokenised as the edit metrics score it."""
    encoded = [encode_pair(tokenizer, prompt, target) for prompt, target in pairs]
    ids, mask = pad_right([p + t for p, t in encoded], pad_id_of(tokenizer), device)
    positions = [list(range(len(p) - 1, len(p) - 1 + len(t))) for p, t in encoded]
    return SeqBatch(ids, mask, positions, [list(t) for _, t in encoded])


def row_nll(logits: torch.Tensor, batch: SeqBatch, rows: Sequence[int] | None = None) -> torch.Tensor:
    """Mean target-token NLL of each row (teacher forced), shape ``(len(rows),)``."""
    rows = range(batch.n_rows) if rows is None else rows
    losses = []
    for row in rows:
        positions = torch.tensor(batch.label_positions[row], device=logits.device)
        ids = torch.tensor(batch.label_ids[row], device=logits.device)
        log_probs = torch.log_softmax(logits[row, positions].float(), dim=-1)
        losses.append(-log_probs.gather(1, ids[:, None]).mean())
    return torch.stack(losses)


def row_accuracy(logits: torch.Tensor, batch: SeqBatch, rows: Sequence[int]) -> list[float]:
    """Share of target tokens that are the argmax (MEND's edit accuracy) for each row."""
    accuracies = []
    for row in rows:
        predicted = logits[row, batch.label_positions[row]].argmax(-1).tolist()
        hits = sum(p == t for p, t in zip(predicted, batch.label_ids[row], strict=True))
        accuracies.append(hits / len(predicted))
    return accuracies


def kl_rows(pre_logits: torch.Tensor, post_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(pre ‖ post) per row, averaged over the row's real tokens (MEND's locality loss)."""
    pre = torch.log_softmax(pre_logits.float(), dim=-1)
    post = torch.log_softmax(post_logits.float(), dim=-1)
    per_token = (pre.exp() * (pre - post)).sum(-1)
    weights = mask.to(per_token.dtype)
    return (per_token * weights).sum(1) / weights.sum(1).clamp(min=1)


def _forward(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits


Factors = dict[str, list[tuple[torch.Tensor, torch.Tensor]]]  # param → per edit row (X (T, in), Δ (T, out))


def capture_factors(
    model: nn.Module, targets: Sequence[Target], batch: SeqBatch, edit_rows: Sequence[int]
) -> tuple[Factors, torch.Tensor]:
    """Each edit row's gradient factors at every target, and the (detached) logits of all rows.

    The loss is the sum over ``edit_rows`` of each row's mean target NLL, so row ``b``'s ``δ`` is the
    gradient of its own loss. Token positions whose ``δ`` is zero (padding; positions after the
    target) are dropped, as the reference does.
    """
    inputs: dict[str, torch.Tensor] = {}
    probes: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(target: Target):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            inputs[target.param] = args[0].detach()
            probe = torch.zeros_like(output, requires_grad=True)
            probes[target.param] = probe
            return output + probe

        return hook

    for target in targets:
        handles.append(model.get_submodule(target.module_name).register_forward_hook(hook_for(target)))
    try:
        with torch.enable_grad():
            logits = _forward(model, batch)
            loss = row_nll(logits, batch, edit_rows).sum()
            names = [t.param for t in targets]
            grads = torch.autograd.grad(loss, [probes[n] for n in names])
    finally:
        for handle in handles:
            handle.remove()
    factors: Factors = {}
    mask = batch.attention_mask.bool()
    for name, grad in zip(names, grads, strict=True):
        per_row = []
        for row in edit_rows:
            keep = mask[row] & (grad[row] != 0).any(-1)
            per_row.append((inputs[name][row][keep].float(), grad[row][keep].float()))
        factors[name] = per_row
    return factors, logits.detach()


def transform_factors(network: MENDNetwork, factors: Factors) -> Factors:
    """``(x̃, δ̃)`` of every token (one network call per matrix over all rows' tokens)."""
    out: Factors = {}
    for name, per_row in factors.items():
        sizes = [x.shape[0] for x, _ in per_row]
        x_all = torch.cat([x for x, _ in per_row]).to(network.edit_lrs.device)
        d_all = torch.cat([d for _, d in per_row]).to(network.edit_lrs.device)
        x_t, d_t = network.transform(name, x_all, d_all)
        out[name] = list(zip(x_t.split(sizes), d_t.split(sizes), strict=True))
    return out


def _padded(per_row: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, Tmax, in) and (C, Tmax, out) stacks, zero-padded (zero rows add nothing to an edit)."""
    width = max(1, max(x.shape[0] for x, _ in per_row))
    xs = torch.stack([F.pad(x, (0, 0, 0, width - x.shape[0])) for x, _ in per_row])
    ds = torch.stack([F.pad(d, (0, 0, 0, width - d.shape[0])) for _, d in per_row])
    return xs, ds


@contextmanager
def edited_forward(
    model: nn.Module, targets: Sequence[Target], network: MENDNetwork, transformed: Factors, row_case: torch.Tensor
) -> Iterator[None]:
    """Inside: row ``r`` of every forward runs with the edit of case ``row_case[r]`` (differentiable
    in the network's outputs and edit lrs)."""
    handles = []

    def hook_for(target: Target):
        xs, ds = _padded(transformed[target.param])
        lr = network.edit_lr(target.param)

        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            x = args[0]
            rows_x, rows_d = xs[row_case].to(x.dtype), ds[row_case].to(x.dtype)
            coefficients = torch.einsum("rsi,rti->rst", x, rows_x)
            return output - lr.to(x.dtype) * torch.einsum("rst,rto->rso", coefficients, rows_d)

        return hook

    for target in targets:
        handles.append(model.get_submodule(target.module_name).register_forward_hook(hook_for(target)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def factors_to_delta(targets: Sequence[Target], network: MENDNetwork, transformed: Factors) -> dict[str, ParamDelta]:
    """The edit of all rows together (their sum) as low-rank factors in each parameter's layout.

    ``nn.Linear`` (weight ``(out, in)``): ``ΔW = (−α Δ̃ᵀ)(X̃)``, so ``u = −α Δ̃ᵀ``, ``v = X̃ᵀ``;
    ``Conv1D`` (weight ``(in, out)``): ``u = X̃ᵀ``, ``v = −α Δ̃ᵀ``. The rank is the number of tokens.
    """
    params = {}
    with torch.no_grad():
        for target in targets:
            x = torch.cat([x for x, _ in transformed[target.param]]).detach()
            d = torch.cat([d for _, d in transformed[target.param]]).detach()
            scaled = -network.edit_lr(target.param).detach() * d
            if target.transposed:
                params[target.param] = ParamDelta(u=x.T.contiguous(), v=scaled.T.contiguous())
            else:
                params[target.param] = ParamDelta(u=scaled.T.contiguous(), v=x.T.contiguous())
    return params
