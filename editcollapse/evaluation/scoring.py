"""Teacher-forced scores of (prompt, target) pairs: per-token log-probs and argmax predictions.

Every edit metric (ROME/MEMIT probability comparisons, EasyEdit/MEND token accuracy) is a
function of these scores, so they are computed once, batched, here.

How a pair is tokenised and padded: :mod:`editcollapse.core.tokens`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from editcollapse.core.tokens import encode_pair, eval_mode, length_batches, pad_id_of, pad_right
from editcollapse.models.hooks import model_device


@dataclass(frozen=True)
class TargetScore:
    """The model's teacher-forced view of one target after one prompt."""

    prompt_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # log P(target token i | prompt, target tokens < i)
    predictions: tuple[int, ...]  # argmax token at each target position (same conditioning)

    @property
    def n_tokens(self) -> int:
        return len(self.target_ids)

    @property
    def sum_logprob(self) -> float:
        """log P(whole target | prompt): the exact multi-token probability."""
        return math.fsum(self.logprobs)

    @property
    def mean_nll(self) -> float:
        """Mean token negative log-likelihood, ROME's per-target score (lower is more probable)."""
        return -self.sum_logprob / self.n_tokens

    @property
    def token_accuracy(self) -> float:
        """EasyEdit/MEND token accuracy: share of target positions whose argmax is the target token."""
        hits = sum(p == t for p, t in zip(self.predictions, self.target_ids, strict=True))
        return hits / self.n_tokens


def score_targets(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 32,
) -> list[TargetScore]:
    """Teacher-forced :class:`TargetScore` of each (prompt, target) pair, in input order."""
    encoded = [encode_pair(tokenizer, prompt, target) for prompt, target in pairs]
    sequences = [p + t for p, t in encoded]
    device = model_device(model)
    scores: list[TargetScore | None] = [None] * len(pairs)
    with eval_mode(model):
        for batch in length_batches([len(s) for s in sequences], batch_size):
            ids, mask = pad_right([sequences[i] for i in batch], pad_id_of(tokenizer), device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            for row, index in enumerate(batch):
                prompt_ids, target_ids = encoded[index]
                # The logit at position j predicts token j+1.
                start, stop = len(prompt_ids) - 1, len(prompt_ids) + len(target_ids) - 1
                log_probs = torch.log_softmax(logits[row, start:stop].double(), dim=-1)
                target = torch.tensor(target_ids, device=log_probs.device)
                scores[index] = TargetScore(
                    prompt_ids=tuple(prompt_ids),
                    target_ids=tuple(target_ids),
                    logprobs=tuple(log_probs.gather(1, target[:, None])[:, 0].tolist()),
                    predictions=tuple(log_probs.argmax(dim=-1).tolist()),
                )
    return [score for score in scores if score is not None]
