"""Where a fact is looked up, and what the rewrite module sees there (ROME/MEMIT keys).

Token positions come from the tokenizer's character offsets, so a subject is found exactly even
when BPE merges it with neighbouring characters. Batches are padded on the right by this module
(never by the tokenizer's own ``padding_side``), so a position counted from the start of a text is
the same position in the padded batch; that is what the reference implementation assumes too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.tokens import pad_id_of
from editcollapse.models.hooks import module_io_at

FACT_TOKENS = ("subject_last", "subject_first", "subject_first_after_last", "last")
PLACEHOLDER = "{}"


@dataclass(frozen=True)
class Located:
    """A tokenized text and the position of its fact lookup token."""

    ids: list[int]
    position: int
    subject_span: tuple[int, int]  # first and last subject token (inclusive)


def fill(template: str, subject: str) -> str:
    """``template`` with its single ``{}`` replaced by ``subject`` (no other brace handling)."""
    if template.count(PLACEHOLDER) != 1:
        raise ValueError(f"template must contain exactly one {PLACEHOLDER!r}: {template!r}")
    return template.replace(PLACEHOLDER, subject, 1)


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` with the tokenizer's special tokens (a BOS token where it adds one)."""
    return list(tokenizer(text)["input_ids"])


def subject_span(tokenizer: PreTrainedTokenizerBase, template: str, subject: str) -> tuple[list[int], int, int]:
    """Token ids of ``template`` filled with ``subject`` and the first/last token covering the subject."""
    if not subject:
        raise ValueError(f"empty subject for template {template!r}")
    if not tokenizer.is_fast:
        raise TypeError("subject location needs a fast tokenizer (character offsets)")
    start = template.index(PLACEHOLDER)
    end = start + len(subject)
    encoded = tokenizer(fill(template, subject), return_offsets_mapping=True)
    covering = [
        index
        for index, (first, last) in enumerate(encoded["offset_mapping"])
        if first < end and last > start and last > first
    ]
    if not covering:
        raise ValueError(f"no token covers subject {subject!r} in {fill(template, subject)!r}")
    return list(encoded["input_ids"]), covering[0], covering[-1]


def locate(tokenizer: PreTrainedTokenizerBase, template: str, subject: str, fact_token: str) -> Located:
    """Tokenize ``template`` filled with ``subject`` and find the lookup token of ``fact_token``.

    ``subject_last``: the subject's last token (ROME's default); ``subject_first``: its first;
    ``subject_first_after_last``: the token after the subject (the last one when nothing follows);
    ``last``: the text's last token.
    """
    if fact_token not in FACT_TOKENS:
        raise ValueError(f"fact_token {fact_token!r} not in {FACT_TOKENS}")
    ids, first, last = subject_span(tokenizer, template, subject)
    if fact_token == "subject_last":
        position = last
    elif fact_token == "subject_first":
        position = first
    elif fact_token == "subject_first_after_last":
        position = min(last + 1, len(ids) - 1)
    else:
        position = len(ids) - 1
    return Located(ids=ids, position=position, subject_span=(first, last))


def has_bos(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> bool:
    """Whether ``ids`` open with the tokenizer's BOS token (SmolLM2 and GPT-2 add none)."""
    return (
        tokenizer.bos_token_id is not None
        and len(ids) > 0
        and ids[0] == tokenizer.bos_token_id
        and len(encode(tokenizer, "")) > 0
    )


def keys_at_templates(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    module: nn.Module,
    templates: Sequence[str],
    prompt: str,
    subject: str,
    fact_token: str,
) -> tuple[torch.Tensor, torch.Tensor, list[Located]]:
    """Inputs and outputs of ``module`` at the lookup token of ``prompt`` behind each context template.

    ``templates`` are ROME context templates (``"{}"``, ``"<generated text>. {}"`` …); each is
    filled with ``prompt`` (which holds the subject's ``{}``). The mean of the inputs is ROME's k*.
    """
    located = [locate(tokenizer, fill(template, prompt), subject, fact_token) for template in templates]
    inputs, outputs = module_io_at(
        model, module, [item.ids for item in located], [item.position for item in located], pad_id_of(tokenizer)
    )
    return inputs, outputs, located
