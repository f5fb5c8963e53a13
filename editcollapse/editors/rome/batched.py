"""ROME and r-ROME for many cases at once: the same updates as :mod:`editcollapse.editors.rome.editor`, batched.

Per case the numbers are those of :func:`~editcollapse.editors.rome.editor.compute_rome_update`; the work is
shared across the cases of a batch:

* the set-up (:class:`~editcollapse.editors.rome.site.ROMESite`, the editor's own) is built once per
  run: context templates are sampled once, and with ``mom2_adjustment`` the covariance C is
  factorised once (LU, float64): every left vector ``C⁻¹k*`` of the run is a triangular solve;
* the keys k* of all cases come from one forward pass that stops at the rewrite module;
* v* (:func:`optimise_target_vectors`) is optimised for all cases in one batch: each case's rows
  (context templates + the KL prompt) carry that case's own delta vector, each case has its own
  Adam optimiser, and a case leaves the batch at the step where the one-case optimisation would stop
  (loss < 0.05, or the last step), so its delta, NLL and step count are the one-case ones. As in the
  one-case code, the tokens before each lookup token run once (KV cache); in addition the blocks
  below the edited layer run once too (:mod:`editcollapse.models.layers`): they do not see the
  delta.

Float note: batching changes matrix shapes and so float32 rounding; the tests bound the difference
to the one-case path. A case whose loss lands within rounding of the early-stop threshold could
stop one step apart (never seen in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta
from editcollapse.core.tokens import pad_id_of, pad_right
from editcollapse.editors.rome.editor import ROMEUpdate
from editcollapse.editors.rome.hparams import LocateEditHparams, ROMEHparams
from editcollapse.editors.rome.keys import Located, locate
from editcollapse.editors.rome.site import ROMESite
from editcollapse.editors.rome.target_vector import (
    EARLY_STOP_LOSS,
    KL_PROMPTS,
    TargetVector,
    _head_log_probs,
    frozen,
    target_token_ids,
)
from editcollapse.models.archmap import ArchMap
from editcollapse.models.hooks import forward_hook, model_device
from editcollapse.models.layers import equal_length_groups, hidden_below, skipping_below

BATCHED_METHODS = ("rome", "r-rome")


@dataclass
class _Prepared:
    """One case's tokenised inputs: its prompt behind every context template, the KL prompts, the target."""

    case: EditCase
    located: list[Located]
    kl_located: list[Located]
    target_ids: list[int]

    @property
    def sequences(self) -> list[list[int]]:
        return [item.ids + self.target_ids[:-1] for item in self.located] + [item.ids for item in self.kl_located]

    @property
    def lookups(self) -> list[int]:
        return [item.position for item in self.located + self.kl_located]


class BatchedROME:
    """Run-level state of batched ROME: one :class:`~editcollapse.editors.rome.site.ROMESite` (templates,
    module names, the factorised covariance) for every batch of the run."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        hparams: ROMEHparams,
        method: str = "rome",
    ) -> None:
        if method not in BATCHED_METHODS:
            raise ValueError(f"batched ROME provides {BATCHED_METHODS}, not {method!r}")
        self.model, self.tokenizer, self.arch, self.hparams, self.method = model, tokenizer, arch, hparams, method
        self.site = ROMESite.build(model, tokenizer, arch, hparams, consistent_keys=method == "r-rome")
        self.templates = list(self.site.templates)
        self.layer, self.rewrite, self.mlp = self.site.layer, self.site.rewrite, self.site.mlp

    # --- updates ------------------------------------------------------------------------------

    def _prepare(self, case: EditCase) -> _Prepared:
        fact_token = self.hparams.fact_token
        located = self.site.locate(case)
        kl_located = [locate(self.tokenizer, kl, case.subject, fact_token) for kl in KL_PROMPTS]
        return _Prepared(
            case=case,
            located=located,
            kl_located=kl_located,
            target_ids=target_token_ids(self.tokenizer, case.target_new),
        )

    def updates(self, cases: list[EditCase]) -> list[ROMEUpdate | Exception]:
        """Each case's :class:`ROMEUpdate`, or the exception that stopped it (as the one-case editor
        would raise it); the model is unchanged."""
        results: list[ROMEUpdate | Exception | None] = [None] * len(cases)
        prepared: list[tuple[int, _Prepared]] = []
        for index, case in enumerate(cases):
            try:
                prepared.append((index, self._prepare(case)))
            except Exception as error:  # noqa: BLE001 — a bad case is reported, the others go on
                results[index] = error
        if prepared:
            items = [item for _, item in prepared]
            keys, outs = self.site.template_keys([item.located for item in items])
            us = self.site.left_vectors(keys.mean(1))
            targets = optimise_target_vectors(
                self.model, self.arch, self.site.layer, self.mlp, items, self.hparams, pad_id_of(self.tokenizer)
            )
            for position, ((index, item), target) in enumerate(zip(prepared, targets, strict=True)):
                u = us[position]
                key, output = self.site.solved_key(keys[position], outs[position])
                right = (target.target - output) / torch.dot(key, u)
                results[index] = ROMEUpdate(
                    param_name=f"{self.site.rewrite_name}.weight",
                    module=self.rewrite,
                    u=u,
                    right=right,
                    key=key,
                    output=output,
                    keys=keys[position].clone(),
                    target=target,
                    located=item.located,
                    templates=list(self.templates),
                    consistent_keys=self.site.consistent,
                    layer=self.site.layer,
                )
        return results  # type: ignore[return-value]

    def delta(self, case: EditCase, update: ROMEUpdate) -> Delta:
        """The Delta the one-case editor returns for this update."""
        return Delta(
            method=self.method,
            params={update.param_name: update.param_delta()},
            hparams_hash=self.site.hparams_hash,
            case_ids=(case.case_id,),
            diagnostics=update.diagnostics(self.tokenizer),
        )


class _RowBatch:
    """Rows split at their lookup token (as :class:`~editcollapse.editors.rome.target_vector.SplitBatch`),
    for any subset of rows: the prefix KV cache and the continuation's input of the edited block are
    computed once; each step runs the blocks from the edited one on, for the rows still optimised.

    No FLOP goes to padding: prefixes are computed in groups of equal length (their keys and values
    then padded with zeros, which the attention mask hides), and each step runs the rows in groups of
    equal continuation length (:meth:`forward`)."""

    def __init__(
        self, model: nn.Module, arch: ArchMap, layer: int, sequences: list[list[int]], splits: list[int], pad: int
    ) -> None:
        device = model_device(model)
        self.model, self.arch, self.layer, self.base = model, arch, layer, model.base_model
        continuations = [sequence[split:] for sequence, split in zip(sequences, splits, strict=True)]
        self.widths = [len(continuation) for continuation in continuations]
        self.input_ids, continuation_mask = pad_right(continuations, pad, device)
        width = self.input_ids.shape[1]
        self.position_ids = torch.tensor(
            [[split + column for column in range(width)] for split in splits], device=device
        )
        self.prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.prefix_width = max(splits)
        self.attention_mask = continuation_mask
        with torch.no_grad():
            if self.prefix_width > 0:
                prefix_ids, prefix_mask = pad_right(
                    [sequence[:split] or [pad] for sequence, split in zip(sequences, splits, strict=True)], pad, device
                )
                prefix_mask[torch.tensor(splits, device=device) == 0] = 0
                self.prefix = self._prefix_cache(prefix_ids, [max(split, 1) for split in splits])
                self.attention_mask = torch.cat([prefix_mask, continuation_mask], dim=1)
            every = torch.arange(len(sequences), device=device)
            self.hidden = hidden_below(model, arch, layer, lambda: self._run(every, width))

    def _prefix_cache(self, prefix_ids: torch.Tensor, lengths: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of every prefix, computed in groups of equal length, zero-padded."""
        cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        for group in equal_length_groups(lengths):
            rows = torch.tensor(group, device=prefix_ids.device)
            length = lengths[group[0]]
            ids = prefix_ids[rows, :length]
            output = self.base(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
            layers = output.cache.layers
            if not cache:
                cache = [
                    (
                        layer.keys.new_zeros(
                            (len(lengths), *layer.keys.shape[1:2], self.prefix_width, layer.keys.shape[-1])
                        ),
                        layer.values.new_zeros(
                            (len(lengths), *layer.values.shape[1:2], self.prefix_width, layer.values.shape[-1])
                        ),
                    )
                    for layer in layers
                ]
            for (keys, values), layer in zip(cache, layers, strict=True):
                keys[rows, :, :length] = layer.keys
                values[rows, :, :length] = layer.values
        return cache

    def _cache(self, rows: torch.Tensor) -> DynamicCache | None:
        if self.prefix is None:
            return None
        return DynamicCache(ddp_cache_data=[(keys[rows], values[rows]) for keys, values in self.prefix])

    def _run(self, rows: torch.Tensor, width: int):
        cache = self._cache(rows)
        return self.base(
            input_ids=self.input_ids[rows, :width],
            attention_mask=self.attention_mask[rows, : self.attention_mask.shape[1] - self.input_ids.shape[1] + width],
            position_ids=self.position_ids[rows, :width],
            cache=cache,
            use_cache=cache is not None,
        ).last_hidden_state

    def groups(self, rows: list[int]) -> list[list[int]]:
        """``rows`` (indices into ``rows``) in groups of equal continuation length."""
        return equal_length_groups([self.widths[row] for row in rows])

    def forward(self, rows: torch.Tensor, width: int) -> torch.Tensor:
        """Final hidden states of the first ``width`` continuation tokens of ``rows``: (rows, width, hidden)."""
        with skipping_below(self.model, self.arch, self.layer, self.hidden[rows, :width]):
            return self._run(rows, width)


def optimise_target_vectors(
    model: nn.Module,
    arch: ArchMap,
    layer: int,
    module: nn.Module,
    items: list[_Prepared],
    settings: LocateEditHparams,
    pad: int,
) -> list[TargetVector]:
    """:func:`~editcollapse.editors.rome.target_vector.optimise_target_vector` for every case of ``items``
    at once (``module``, the MLP of block ``layer``, is where each case's delta is added)."""
    device = model_device(model)
    sequences, lookups, case_rows, offset = [], [], [], 0
    for item in items:
        sequences.extend(item.sequences)
        lookups.extend(item.lookups)
        case_rows.append(torch.arange(offset, offset + len(item.sequences), device=device))
        offset += len(item.sequences)
    batch = _RowBatch(model, arch, layer, sequences, lookups, pad)

    # per case, rows local to the case: (row, column, label) of every target token, and the KL rows
    targets, kl_local = [], []
    for item, _rows in zip(items, case_rows, strict=True):
        found = [
            (row, len(loc.ids) - 1 + step - loc.position, token)
            for row, loc in enumerate(item.located)
            for step, token in enumerate(item.target_ids)
        ]
        targets.append(tuple(torch.tensor(column, device=device) for column in zip(*found, strict=True)))
        n_rewrite = len(item.located)
        kl_local.append(
            (
                torch.arange(n_rewrite, len(item.sequences), device=device),
                torch.zeros(len(item.kl_located), dtype=torch.long, device=device),
            )
        )  # lookup = column 0

    width = model.get_output_embeddings().in_features
    deltas = [torch.zeros(width, device=device, requires_grad=True) for _ in items]
    optimizers = [torch.optim.Adam([delta], lr=settings.v_lr) for delta in deltas]
    inits: list[torch.Tensor | None] = [None] * len(items)  # the MLP's unedited output at each bare prompt
    kl_inits: list[torch.Tensor | None] = [None] * len(items)
    results: list[TargetVector | None] = [None] * len(items)
    active = list(range(len(items)))
    state: dict[str, Any] = {}

    def add_delta(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        for position, case in state["capture"]:
            inits[case] = hidden[position, 0].detach().clone()
        added = torch.zeros_like(hidden)
        added[:, 0] = state["row_deltas"].to(hidden.dtype)  # every row's lookup token is its first column
        changed = hidden + added
        return (changed, *output[1:]) if isinstance(output, tuple) else changed

    width_all = batch.input_ids.shape[1]
    with frozen(model), forward_hook(module, add_delta):
        for step in range(settings.v_num_grad_steps):
            sizes = [len(case_rows[case]) for case in active]
            starts = [sum(sizes[:position]) for position in range(len(active))]
            rows_list = torch.cat([case_rows[case] for case in active]).tolist()
            for case in active:
                optimizers[case].zero_grad()
            row_deltas = torch.cat([deltas[case].expand(size, -1) for case, size in zip(active, sizes, strict=True)])
            first_rows = {starts[position]: case for position, case in enumerate(active)} if step == 0 else {}
            hidden = torch.zeros(len(rows_list), width_all, width, device=device)
            for group in batch.groups(rows_list):  # equal continuation lengths: no padding
                local = torch.tensor(group, device=device)
                group_width = batch.widths[rows_list[group[0]]]
                state.update(
                    row_deltas=row_deltas[local],
                    capture=[(index, first_rows[row]) for index, row in enumerate(group) if row in first_rows],
                )
                hidden[local, :group_width] = batch.forward(
                    torch.tensor([rows_list[row] for row in group], device=device), group_width
                )
            gather_rows = torch.cat([targets[case][0] + start for case, start in zip(active, starts, strict=True)])
            gather_columns = torch.cat([targets[case][1] for case in active])
            labels = torch.cat([targets[case][2] for case in active])
            token_log_probs = (
                _head_log_probs(model, hidden[gather_rows, gather_columns]).gather(1, labels.unsqueeze(1)).squeeze(1)
            )
            kl_rows = torch.cat([kl_local[case][0] + start for case, start in zip(active, starts, strict=True)])
            kl_columns = torch.cat([kl_local[case][1] for case in active])
            kl_log_probs = _head_log_probs(model, hidden[kl_rows, kl_columns])
            continuing, losses, token_offset, kl_offset = [], [], 0, 0
            for case in active:
                item = items[case]
                n_rewrite, n_tokens = len(item.located), len(targets[case][0])
                mine = token_log_probs[token_offset : token_offset + n_tokens]
                token_offset += n_tokens
                nll_each = -torch.zeros(n_rewrite, device=device).index_add(0, targets[case][0], mine) / len(
                    item.target_ids
                )
                n_kl = len(item.kl_located)
                kl_now = kl_log_probs[kl_offset : kl_offset + n_kl]
                kl_offset += n_kl
                if kl_inits[case] is None:
                    kl_inits[case] = kl_now.detach().clone()
                kl = settings.kl_factor * torch.nn.functional.kl_div(
                    kl_inits[case], kl_now, log_target=True, reduction="batchmean"
                )
                decay = settings.v_weight_decay * (torch.norm(deltas[case]) / torch.norm(inits[case]) ** 2)
                loss = nll_each.mean() + kl + decay
                if loss < EARLY_STOP_LOSS or step == settings.v_num_grad_steps - 1:
                    results[case] = _finished(inits[case], deltas[case], nll_each, step, item.lookups)
                else:
                    continuing.append(case)
                    losses.append(loss)
            if not continuing:
                break
            torch.stack(losses).sum().backward()
            for case in continuing:
                optimizers[case].step()
                max_norm = settings.clamp_norm_factor * inits[case].norm()
                if deltas[case].norm() > max_norm:
                    with torch.no_grad():
                        deltas[case][...] = deltas[case] * max_norm / deltas[case].norm()
            active = continuing
    return results  # type: ignore[return-value]


def _finished(
    init: torch.Tensor, delta: torch.Tensor, nll_each: torch.Tensor, steps: int, lookups: list[int]
) -> TargetVector:
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
