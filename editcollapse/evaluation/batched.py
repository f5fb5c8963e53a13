"""Edit metrics and ME-PPL of many rank-one-edited models at once.

Every row of a forward pass belongs to one (edit, text) pair and carries that edit through
:func:`~editcollapse.evaluation.lowrank.row_rank_one`; the blocks below the edited layer are skipped,
their output (the input of the edited block) having been computed once per text
(:mod:`editcollapse.models.layers`): once per run for the perplexity corpus, once per case for the
case's metric prompts (its unedited "pre" scores come from the same pass). The output head runs only
at the positions that are scored, and rows are batched by equal length (no padding). The numbers are those of
:func:`~editcollapse.evaluation.perplexity.perplexity` and
:func:`~editcollapse.evaluation.edit_metrics.measure_cases` (same tokenisation, same float64
log-softmax), up to float32 rounding of the batched matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.tokens import encode_pair, eval_mode, pad_id_of, pad_right
from editcollapse.evaluation.edit_metrics import LocalityReference, case_pairs, metrics_from_scores
from editcollapse.evaluation.lowrank import row_rank_one
from editcollapse.evaluation.perplexity import PerplexityResult, encode_texts, summarise
from editcollapse.evaluation.scoring import TargetScore
from editcollapse.models.archmap import ArchMap
from editcollapse.models.hooks import model_device
from editcollapse.models.layers import equal_length_groups, hidden_below, skipping_below

# a rank-one edit as (u, right): the edited module's output changes by (x · u) right
RankOne = tuple[torch.Tensor, torch.Tensor]

TOKEN_BUDGET = 8192  # tokens (rows × padded width) per forward pass
HEAD_CHUNK = 1024  # positions per output-head product (bounds the (positions × vocabulary) logits)


@dataclass
class _Batch:
    """Right-padded rows and their input of the edited block (computed once)."""

    ids: torch.Tensor
    mask: torch.Tensor
    hidden: torch.Tensor
    members: list[int]  # which text / pair each row is


class EditedForward:
    """Forward passes of the model from the edited block on, with one rank-one edit per row."""

    def __init__(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, arch: ArchMap, layer: int, module: nn.Module
    ) -> None:
        self.model, self.tokenizer, self.arch, self.layer, self.module = model, tokenizer, arch, layer, module
        self.device = model_device(model)
        self.pad = pad_id_of(tokenizer)
        self.head = model.get_output_embeddings()

    def batch(self, sequences: Sequence[Sequence[int]], members: list[int]) -> _Batch:
        """Pad ``sequences`` and compute their input of the edited block (no edit can change it)."""
        ids, mask = pad_right(sequences, self.pad, self.device)
        with eval_mode(self.model):
            hidden = hidden_below(
                self.model, self.arch, self.layer, lambda: self.model.base_model(input_ids=ids, attention_mask=mask)
            )
        return _Batch(ids=ids, mask=mask, hidden=hidden, members=members)

    def final_hidden(self, batch: _Batch, edits: Sequence[RankOne | None], repeat: int = 1) -> torch.Tensor:
        """Final hidden states (after the last norm) of ``batch`` repeated once per edit
        (rows: edit-major) — ``None`` is the unedited model; ``repeat`` copies of the batch per edit."""
        n = batch.ids.shape[0]
        copies = len(edits) * repeat
        ids, mask = batch.ids.repeat(copies, 1), batch.mask.repeat(copies, 1)
        hidden = batch.hidden.repeat(copies, 1, 1)
        width_in, width_out = self._widths(edits)
        ins = torch.zeros(len(edits), width_in, device=self.device)
        outs = torch.zeros(len(edits), width_out, device=self.device)
        for index, edit in enumerate(edits):
            if edit is not None:
                ins[index], outs[index] = edit[0], edit[1]
        with eval_mode(self.model), skipping_below(self.model, self.arch, self.layer, hidden):
            if all(edit is None for edit in edits):
                return self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
            with row_rank_one(self.module, ins.repeat_interleave(n * repeat, 0), outs.repeat_interleave(n * repeat, 0)):
                return self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state

    def _widths(self, edits: Sequence[RankOne | None]) -> tuple[int, int]:
        for edit in edits:
            if edit is not None:
                return edit[0].shape[0], edit[1].shape[0]
        return 1, 1

    def edits_per_pass(self, batch: _Batch) -> int:
        """How many edits of ``batch`` one forward pass holds within :data:`TOKEN_BUDGET`."""
        return max(1, TOKEN_BUDGET // batch.ids.numel())


class PerplexityCorpus:
    """A perplexity corpus prepared once per run: tokenised, length-batched, its input of the edited
    block computed; :meth:`perplexities` gives each edited model's :class:`PerplexityResult`."""

    def __init__(self, forward: EditedForward, texts: Sequence[str], batch_size: int = 16) -> None:
        self.forward = forward
        self.encoded = encode_texts(forward.model, forward.tokenizer, texts)
        self.counts = [max(len(ids) - 1, 0) for ids in self.encoded]
        scorable = [i for i, ids in enumerate(self.encoded) if len(ids) >= 2]
        self.batches = []
        for group in equal_length_groups([len(self.encoded[i]) for i in scorable], batch_size):
            rows = [scorable[b] for b in group]
            self.batches.append(forward.batch([self.encoded[i] for i in rows], rows))

    @torch.no_grad()
    def perplexities(self, edits: Sequence[RankOne | None]) -> list[PerplexityResult]:
        """Per edit (``None``: the unedited model), the perplexity of the corpus."""
        nll_sums = [[0.0] * len(self.encoded) for _ in edits]
        for batch in self.batches:
            step = self.forward.edits_per_pass(batch)
            for first in range(0, len(edits), step):
                chunk = edits[first : first + step]
                hidden = self.forward.final_hidden(batch, chunk)
                ids, mask = batch.ids.repeat(len(chunk), 1), batch.mask.repeat(len(chunk), 1)
                scored = mask[:, 1:].bool()
                states, labels = hidden[:, :-1][scored], ids[:, 1:][scored]
                token_nll = torch.cat(
                    [
                        torch.nn.functional.cross_entropy(
                            self.forward.head(states[start : start + HEAD_CHUNK]).double(),
                            labels[start : start + HEAD_CHUNK],
                            reduction="none",
                        )
                        for start in range(0, len(labels), HEAD_CHUNK)
                    ]
                )
                per_row = torch.zeros(len(chunk) * len(batch.members), dtype=torch.float64, device=token_nll.device)
                per_row.index_add_(0, scored.nonzero()[:, 0], token_nll)
                per_row = per_row.view(len(chunk), len(batch.members)).tolist()
                for offset in range(len(chunk)):
                    for column, text in enumerate(batch.members):
                        nll_sums[first + offset][text] = per_row[offset][column]
        return [summarise(sums, self.counts) for sums in nll_sums]


class CaseScores:
    """The metric prompts of some cases, prepared once (tokenised, input of the edited block computed):
    :meth:`metrics` scores them under the unedited model or under each case's own edit."""

    def __init__(self, forward: EditedForward, cases: Sequence[EditCase], batch_size: int = 64) -> None:
        self.forward, self.cases = forward, list(cases)
        self.errors: dict[int, Exception] = {}
        self.slots: dict[int, dict[str, list[int]]] = {}
        self.encoded: list[tuple[list[int], list[int]]] = []
        self.owner: list[int] = []  # case of each pair
        self.first: dict[int, int] = {}  # index of a case's first pair
        for index, case in enumerate(self.cases):
            try:
                pairs, slots = case_pairs(case)
                encoded = [encode_pair(forward.tokenizer, prompt, target) for prompt, target in pairs]
            except Exception as error:  # noqa: BLE001 — reported for this case only
                self.errors[index] = error
                continue
            self.slots[index], self.first[index] = slots, len(self.encoded)
            self.encoded.extend(encoded)
            self.owner.extend([index] * len(encoded))
        sequences = [p + t for p, t in self.encoded]
        self.batches = [
            forward.batch([sequences[i] for i in group], group)
            for group in equal_length_groups([len(s) for s in sequences], batch_size)
        ]

    @torch.no_grad()
    def scores(self, edits: Sequence[RankOne | None] | None = None) -> dict[int, dict[str, list[TargetScore]]]:
        """Per case (that could be encoded), its slots' scores; ``edits[i]`` is case i's edit
        (``None`` or no ``edits``: the unedited model)."""
        head = self.forward.head
        flat: list[TargetScore | None] = [None] * len(self.encoded)
        for batch in self.batches:
            row_edits = [None if edits is None else edits[self.owner[pair]] for pair in batch.members]
            hidden = self._hidden(batch, row_edits)
            rows, columns, spans = [], [], []
            for row, pair in enumerate(batch.members):
                prompt_ids, target_ids = self.encoded[pair]
                start = len(prompt_ids) - 1  # the logit at position j predicts token j+1
                spans.append((len(rows), len(target_ids)))
                rows.extend([row] * len(target_ids))
                columns.extend(range(start, start + len(target_ids)))
            log_probs = torch.log_softmax(head(hidden[torch.tensor(rows), torch.tensor(columns)]).double(), dim=-1)
            for (offset, length), pair in zip(spans, batch.members, strict=True):
                prompt_ids, target_ids = self.encoded[pair]
                block = log_probs[offset : offset + length]
                target = torch.tensor(target_ids, device=block.device)
                flat[pair] = TargetScore(
                    prompt_ids=tuple(prompt_ids),
                    target_ids=tuple(target_ids),
                    logprobs=tuple(block.gather(1, target[:, None])[:, 0].tolist()),
                    predictions=tuple(block.argmax(dim=-1).tolist()),
                )
        return {
            case: {slot: [flat[self.first[case] + i] for i in indices] for slot, indices in slots.items()}
            for case, slots in self.slots.items()
        }

    def _hidden(self, batch: _Batch, row_edits: list[RankOne | None]) -> torch.Tensor:
        """Final hidden states of ``batch``, each row under its own case's edit."""
        forward = self.forward
        if all(edit is None for edit in row_edits):
            return forward.final_hidden(batch, [None])
        width_in, width_out = forward._widths(row_edits)
        ins = torch.stack([torch.zeros(width_in, device=forward.device) if e is None else e[0] for e in row_edits])
        outs = torch.stack([torch.zeros(width_out, device=forward.device) if e is None else e[1] for e in row_edits])
        with (
            eval_mode(forward.model),
            skipping_below(forward.model, forward.arch, forward.layer, batch.hidden),
            row_rank_one(forward.module, ins, outs),
        ):
            return forward.model.base_model(input_ids=batch.ids, attention_mask=batch.mask).last_hidden_state

    def metrics(
        self,
        edits: Sequence[RankOne | None] | None = None,
        references: Sequence[LocalityReference | None] | None = None,
    ) -> dict[int, dict[str, float]]:
        """Per case, :func:`~editcollapse.evaluation.edit_metrics.measure_cases`'s metrics."""
        return {
            case: metrics_from_scores(got, None if references is None else references[case])
            for case, got in self.scores(edits).items()
        }


def locality_references(scores: dict[int, dict[str, list[TargetScore]]]) -> dict[int, LocalityReference]:
    """The unedited model's argmax tokens at each case's neighborhood answers, from its "pre" scores
    (:func:`~editcollapse.evaluation.edit_metrics.locality_reference`)."""
    return {
        case: tuple(score.predictions for score in got.get("neighbour_expected", [])) for case, got in scores.items()
    }
