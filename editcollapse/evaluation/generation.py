"""Greedy generation: batched continuations, and the five prompt kinds of an edit case, pre and post edit.

The five kinds (ROME/MEMIT demo, NTU ML HW6): ``original`` (the edit prompt with the subject),
``paraphrase`` (same subject and relation, other words), ``neighborhood`` (a similar prompt about
another subject), ``reversion`` (target_new as the subject, e.g. "Microsoft is founded by") and
``portability`` (a prompt whose answer follows logically from the edited fact). A case provides
each kind from its fields: the edit prompt, its paraphrase/neighborhood/portability prompts, and
``extra["reversion_prompt"]``; a kind the case lacks is skipped, never invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta
from editcollapse.core.tokens import eval_mode, length_batches, pad_batch, pad_id_of
from editcollapse.models.hooks import model_device

PROMPT_KINDS = ("original", "paraphrase", "neighborhood", "reversion", "portability")


@dataclass(frozen=True)
class Generation:
    """One greedy continuation of one prompt of one case, at one stage ("pre" or "post" edit)."""

    case_id: str
    kind: str
    prompt: str
    text: str  # the continuation only, as decoded (special tokens skipped)
    stage: str


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` up to (not including) the first occurrence of any stop string."""
    cut = len(text)
    for stop in stop_strings:
        position = text.find(stop)
        if position != -1:
            cut = min(cut, position)
    return text[:cut]


def greedy_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 40,
    stop_strings: Sequence[str] = (),
    batch_size: int = 8,
    add_special_tokens: bool = True,
) -> list[str]:
    """Greedy continuation of each prompt (left-padded batches), cut at the first stop string.

    Generation also ends at the tokenizer's EOS. By default the prompt is tokenised as the
    tokenizer does (a BOS where the model expects one); pass ``add_special_tokens=False`` for
    text that already carries them (a rendered chat template).
    """
    encoded = [list(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]) for prompt in prompts]
    for index, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {index} is empty: nothing to continue")
    device = model_device(model)
    pad_id = pad_id_of(tokenizer)
    outputs: list[str] = [""] * len(prompts)
    extra = {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    with eval_mode(model):
        for batch in length_batches([len(ids) for ids in encoded], batch_size):
            ids, mask = pad_batch([encoded[i] for i in batch], pad_id, device, side="left")
            generated = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                num_beams=1,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
                **extra,
            )
            for row, index in enumerate(batch):
                text = tokenizer.decode(generated[row, ids.shape[1] :], skip_special_tokens=True)
                outputs[index] = cut_at_stop(text, stop_strings)
    return outputs


def case_prompts(case: EditCase) -> list[tuple[str, str]]:
    """(kind, prompt) of each of the five kinds the case provides (first prompt of each list)."""
    found = {
        "original": case.filled_prompt,
        "paraphrase": case.paraphrase_prompts[0] if case.paraphrase_prompts else None,
        "neighborhood": case.neighborhood[0].prompt if case.neighborhood else None,
        "reversion": case.extra.get("reversion_prompt"),
        "portability": case.portability[0].prompt if case.portability else None,
    }
    return [(kind, found[kind]) for kind in PROMPT_KINDS if found[kind]]


def generate_cases(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cases: Sequence[EditCase],
    *,
    stage: str,
    max_new_tokens: int = 40,
    batch_size: int = 8,
) -> list[Generation]:
    """Greedy continuations of every case's prompt kinds, tagged with ``stage``."""
    items = [(case.case_id, kind, prompt) for case in cases for kind, prompt in case_prompts(case)]
    texts = greedy_generate(
        model, tokenizer, [prompt for _, _, prompt in items], max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return [
        Generation(case_id, kind, prompt, text, stage)
        for (case_id, kind, prompt), text in zip(items, texts, strict=True)
    ]


def generate_pre_post(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cases: Sequence[EditCase],
    delta: Delta,
    *,
    max_new_tokens: int = 40,
    batch_size: int = 8,
) -> list[Generation]:
    """Generations of the unedited model ("pre") and with ``delta`` applied ("post"); the model is restored."""
    pre = generate_cases(model, tokenizer, cases, stage="pre", max_new_tokens=max_new_tokens, batch_size=batch_size)
    with delta.applied(model):
        post = generate_cases(
            model, tokenizer, cases, stage="post", max_new_tokens=max_new_tokens, batch_size=batch_size
        )
    return pre + post
