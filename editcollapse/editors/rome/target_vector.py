"""The target vector (ROME's v*, MEMIT's z): the output of one module that makes the model say the target.

Follows the reference ``compute_v`` (ROME) / ``compute_z`` (MEMIT): a vector ``delta`` is added to
the edited module's output at the subject's lookup token of every prompt; Adam minimises

    NLL(target | context-template + prompt)           averaged over the templates
  + kl_factor · KL(p_now ‖ p_before) on "{subject} is a" at its lookup token
  + v_weight_decay · ‖delta‖ / ‖init‖²

with ``delta`` projected back into the ball ‖delta‖ ≤ clamp_norm_factor · ‖init‖ after each step,
stopping early when the loss falls below 0.05. ``init`` is the module's unedited output at the
lookup token of the first prompt (template ``"{}"``, the bare prompt). ROME edits the MLP's output
(``mlp_module_tmp``), MEMIT the block's output (``layer_module_tmp``).

The model's weights are never touched: the change is a forward hook on activations, and the
parameters' ``requires_grad`` flags are restored afterwards. Differences from the reference, both
exactness fixes: target tokens are appended as token ids (not decoded and re-tokenized). Two speed-ups
that change no number: only the positions the loss needs go through the output head, and the tokens
before the lookup token run once (:class:`SplitBatch`) instead of at every step.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.tokens import pad_id_of, pad_right
from editcollapse.editors.rome.hparams import LocateEditHparams
from editcollapse.editors.rome.keys import fill, locate
from editcollapse.models.hooks import forward_hook, model_device

KL_PROMPTS = ("{} is a",)
EARLY_STOP_LOSS = 5e-2


@dataclass
class TargetVector:
    """The optimised output ``target = init + delta`` and how the optimisation went."""

    target: torch.Tensor
    init: torch.Tensor
    delta: torch.Tensor
    nll: float  # mean NLL per target token over the rewriting prompts, at the last evaluated delta
    target_prob: float  # mean over prompts of exp(-NLL per token)
    steps: int  # gradient steps taken
    lookup_positions: list[int]  # per prompt: rewriting prompts, then the KL prompts


def target_token_ids(tokenizer: PreTrainedTokenizerBase, target: str) -> list[int]:
    """Token ids of the target with a leading space (ROME/MEMIT prepend one when it is missing)."""
    text = target if target.startswith(" ") else " " + target
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise ValueError(f"target {target!r} tokenizes to nothing")
    return ids


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Parameters do not require grad inside the block; their flags are restored afterwards."""
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        for param, _ in flags:
            param.requires_grad_(False)
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def _replace_first(output, value: torch.Tensor):
    if isinstance(output, tuple):
        return (value, *output[1:])
    return value


def _head_log_probs(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(model.get_output_embeddings()(hidden).float(), dim=-1)


class SplitBatch:
    """Rows split at their lookup token: the prefix runs once (cached), the rest every step.

    Nothing before the lookup token depends on the optimised vector (causal attention), so its
    keys and values are computed once; each step runs only the tokens from the lookup token on, with
    their true positions. Exact: the same computation as a full forward pass, at a fraction of the
    cost. Prefixes and continuations are right-padded; padding is masked out.
    """

    def __init__(self, model: nn.Module, sequences: Sequence[Sequence[int]], splits: Sequence[int], pad: int) -> None:
        device = model_device(model)
        self.base = model.base_model
        self.splits = list(splits)
        prefix_width = max(self.splits)
        continuations = [list(sequence[split:]) for sequence, split in zip(sequences, splits, strict=True)]
        self.input_ids, continuation_mask = pad_right(continuations, pad, device)
        width = self.input_ids.shape[1]
        self.position_ids = torch.tensor(
            [[split + column for column in range(width)] for split in self.splits], device=device
        )
        self.prefix_cache = None
        self.attention_mask = continuation_mask
        if prefix_width > 0:
            prefix_ids, prefix_mask = pad_right(
                [list(sequence[:split]) or [pad] for sequence, split in zip(sequences, splits, strict=True)],
                pad,
                device,
            )
            prefix_mask[torch.tensor(self.splits, device=device) == 0] = 0
            with torch.no_grad():  # pads attend causally to real tokens only behind them: finite, never read
                self.prefix_cache = self.base(
                    input_ids=prefix_ids, attention_mask=torch.ones_like(prefix_ids), use_cache=True
                ).cache
            self.attention_mask = torch.cat([prefix_mask, continuation_mask], dim=1)

    def column(self, row: int, position: int) -> int:
        """The continuation column of absolute ``position`` in ``row``."""
        if position < self.splits[row]:
            raise ValueError(f"position {position} of row {row} lies in its cached prefix")
        return position - self.splits[row]

    def forward(self) -> torch.Tensor:
        """Final hidden states (post final norm) of the continuation tokens: (rows, columns, hidden)."""
        cache = copy.deepcopy(self.prefix_cache) if self.prefix_cache is not None else None
        return self.base(
            input_ids=self.input_ids,
            attention_mask=self.attention_mask,
            position_ids=self.position_ids,
            cache=cache,
            use_cache=cache is not None,
        ).last_hidden_state


def optimise_target_vector(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    module_name: str,
    prompt: str,
    subject: str,
    target: str,
    templates: Sequence[str],
    settings: LocateEditHparams,
) -> TargetVector:
    """Optimise the output of ``module_name`` at the subject so the model completes ``prompt`` with ``target``.

    ``prompt`` holds ``{}`` for ``subject``; ``templates`` are context templates, the first being
    ``"{}"`` (the bare prompt, where ``init`` is read). ``settings`` are ROME's or MEMIT's
    hyperparameters: ``v_num_grad_steps``, ``v_lr``, ``v_weight_decay``, ``clamp_norm_factor``,
    ``kl_factor`` and ``fact_token`` are read.
    """
    if not templates or templates[0] != "{}":
        raise ValueError("the first context template must be '{}' (the bare prompt)")
    device = model_device(model)
    target_ids = target_token_ids(tokenizer, target)
    located = [locate(tokenizer, fill(template, prompt), subject, settings.fact_token) for template in templates]
    kl_located = [locate(tokenizer, kl, subject, settings.fact_token) for kl in KL_PROMPTS]
    sequences = [item.ids + target_ids[:-1] for item in located] + [item.ids for item in kl_located]
    lookups = [item.position for item in located + kl_located]
    batch = SplitBatch(model, sequences, lookups, pad_id_of(tokenizer))

    # (row, column, label) of every target token: the logit at position p predicts token p + 1.
    n_rewrite = len(located)
    rows, columns, labels = [], [], []
    for row, item in enumerate(located):
        start = len(item.ids) - 1
        for offset, token in enumerate(target_ids):
            rows.append(row)
            columns.append(batch.column(row, start + offset))
            labels.append(token)
    rows_t = torch.tensor(rows, device=device)
    columns_t = torch.tensor(columns, device=device)
    labels_t = torch.tensor(labels, device=device)
    kl_rows = torch.arange(n_rewrite, len(sequences), device=device)
    kl_columns = torch.tensor(
        [batch.column(n_rewrite + index, item.position) for index, item in enumerate(kl_located)], device=device
    )

    module = model.get_submodule(module_name)
    # every row's lookup token is the first column of its continuation
    lookup_mask = torch.zeros(batch.input_ids.shape, device=device)
    lookup_mask[:, 0] = 1.0
    state: dict[str, torch.Tensor] = {}

    def add_delta(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if "init" not in state:
            state["init"] = hidden[0, 0].detach().clone()
        return _replace_first(output, hidden + lookup_mask.unsqueeze(-1).to(hidden.dtype) * delta.to(hidden.dtype))

    width = model.get_output_embeddings().in_features
    delta = torch.zeros(width, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=settings.v_lr)
    kl_init = None
    steps = 0
    nll_each = torch.zeros(n_rewrite)
    with frozen(model), forward_hook(module, add_delta):
        for step in range(settings.v_num_grad_steps):
            optimizer.zero_grad()
            hidden = batch.forward()
            token_log_probs = (
                _head_log_probs(model, hidden[rows_t, columns_t]).gather(1, labels_t.unsqueeze(1)).squeeze(1)
            )
            nll_each = -torch.zeros(n_rewrite, device=device).index_add(0, rows_t, token_log_probs) / len(target_ids)
            nll = nll_each.mean()
            kl_log_probs = _head_log_probs(model, hidden[kl_rows, kl_columns])
            if kl_init is None:
                kl_init = kl_log_probs.detach().clone()
            kl = settings.kl_factor * torch.nn.functional.kl_div(
                kl_init, kl_log_probs, log_target=True, reduction="batchmean"
            )
            decay = settings.v_weight_decay * (torch.norm(delta) / torch.norm(state["init"]) ** 2)
            loss = nll + kl + decay
            if loss < EARLY_STOP_LOSS or step == settings.v_num_grad_steps - 1:
                break
            loss.backward()
            optimizer.step()
            steps += 1
            max_norm = settings.clamp_norm_factor * state["init"].norm()
            if delta.norm() > max_norm:
                with torch.no_grad():
                    delta[...] = delta * max_norm / delta.norm()
    init = state["init"]
    nll_each = nll_each.detach()
    final_delta = delta.detach().clone().to(init.dtype)
    return TargetVector(
        target=init + final_delta,
        init=init,
        delta=final_delta,
        nll=float(nll_each.mean()),
        target_prob=float(torch.exp(-nll_each).mean()),
        steps=steps,
        lookup_positions=lookups,
    )
