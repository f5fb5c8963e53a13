"""Token-level primitives every layer shares: encoding a (prompt, target) pair, padding, batching.

Tokenisation of a (prompt, target) pair (the detail that decides multi-token and leading-space targets):

* The scored text is ``prompt + " " + target`` — the target follows the prompt after one space,
  as in ROME (``f"{prefix} {target}"``, target tokens ``tok(f" {target}")``) and EasyEdit
  (``prompt + ' ' + target``). A prompt's trailing whitespace is stripped first and a target's
  leading whitespace is not doubled, so ``"… system, "`` + ``"Windows"`` scores ``" Windows"``.
* The whole string is tokenised jointly; the target tokens are the tokens after the prompt's own
  tokenisation. When the joint tokenisation does not extend the prompt's (a BPE merge across the
  boundary), the prompt tokens and ``tokenizer(" " + target, add_special_tokens=False)`` are
  concatenated instead (ROME's way). Either way the target ids are exactly the tokens that are
  scored, special tokens (a BOS, when the tokenizer adds one) only ever precede the prompt.
* Sequences are right-padded with an attention mask, so real tokens keep positions 0..n-1 and no
  real token attends to padding; padding and batch size change numbers only by float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from transformers import PreTrainedTokenizerBase


def _ids(tokenizer: PreTrainedTokenizerBase, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_pair(tokenizer: PreTrainedTokenizerBase, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) of ``prompt`` followed by ``" " + target`` (see the module doc)."""
    prompt = prompt.rstrip()
    if not target.strip():
        raise ValueError(f"empty target after prompt {prompt!r}")
    target_text = target if target[:1].isspace() else " " + target
    prompt_ids = _ids(tokenizer, prompt, special=True)
    if not prompt_ids:
        raise ValueError(f"empty prompt before target {target!r}: nothing conditions the first token")
    joint = _ids(tokenizer, prompt + target_text, special=True)
    if len(joint) > len(prompt_ids) and joint[: len(prompt_ids)] == prompt_ids:
        return prompt_ids, joint[len(prompt_ids) :]
    return prompt_ids, _ids(tokenizer, target_text, special=False)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode under no_grad, restoring its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device, *, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of ``sequences`` padded on ``side`` ("right" or "left").

    Scoring pads on the right (real tokens keep positions 0..n-1); generation pads on the left
    (every row's next token is predicted at the last column).
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', not {side!r}")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        columns = slice(0, len(sequence)) if side == "right" else slice(width - len(sequence), width)
        ids[row, columns] = torch.tensor(sequence, dtype=torch.long)
        mask[row, columns] = 1
    return ids.to(device), mask.to(device)


def pad_right(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (the layout teacher-forced scoring uses)."""
    return pad_batch(sequences, pad_id, device, side="right")


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id used for padding (its value never matters: padded positions are masked)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to keep padding small."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
