"""A causal LM whose logits the tests set by hand: logits at position t = table[token t].

Its probabilities can be computed independently of any batching code (a table lookup), so
evaluation metrics can be checked against hand-computed values.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from editcollapse.models.tiny import byte_level_tokenizer


class BigramLM(nn.Module):
    """P(next | history) = softmax(table[last token])."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone().float(), requires_grad=False)
        self.config = SimpleNamespace(max_position_embeddings=1024)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: object):
        return SimpleNamespace(logits=self.table[input_ids])


def tokenizer():
    """The tiny models' byte-level tokenizer (one token per byte, ' ' is its own token)."""
    return byte_level_tokenizer()


def random_bigram(seed: int = 0, scale: float = 3.0) -> BigramLM:
    generator = torch.Generator().manual_seed(seed)
    size = len(byte_level_tokenizer())
    return BigramLM(scale * torch.randn(size, size, generator=generator))


def direct_logprobs(model: BigramLM, ids: list[int], start: int) -> list[float]:
    """log P(ids[i] | ids[i-1]) for i ≥ start, in float64, straight from the table."""
    table = model.table.double()
    out = []
    for i in range(start, len(ids)):
        row = table[ids[i - 1]]
        out.append(float(row[ids[i]] - torch.logsumexp(row, dim=0)))
    return out


def direct_mean_nll(model: BigramLM, tok, prompt: str, target: str) -> float:
    """ROME's score of ``target`` after ``prompt``, computed independently: mean NLL of " "+target."""
    prompt_ids = tok(prompt)["input_ids"]
    target_ids = tok(" " + target)["input_ids"]
    logprobs = direct_logprobs(model, prompt_ids + target_ids, len(prompt_ids))
    return -math.fsum(logprobs) / len(logprobs)


def direct_token_accuracy(model: BigramLM, tok, prompt: str, target: str) -> float:
    prompt_ids = tok(prompt)["input_ids"]
    ids = prompt_ids + tok(" " + target)["input_ids"]
    hits = [int(model.table[ids[i - 1]].argmax()) == ids[i] for i in range(len(prompt_ids), len(ids))]
    return sum(hits) / len(hits)
