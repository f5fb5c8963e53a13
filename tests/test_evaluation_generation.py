"""Greedy generation: batched equals one at a time, stop strings, the five prompt kinds, pre/post."""

from __future__ import annotations

import pytest
import torch
from conftest import requires_smollm2

from editcollapse.core.case import EditCase, NeighborhoodPrompt, PortabilityPrompt
from editcollapse.core.delta import Delta, ParamDelta
from editcollapse.evaluation.generation import (
    PROMPT_KINDS,
    case_prompts,
    cut_at_stop,
    generate_cases,
    generate_pre_post,
    greedy_generate,
)
from editcollapse.models import load_model

CASE = EditCase(
    case_id="hw6:1",
    dataset="counterfact",
    prompt="{} was the founder of",
    subject="Steve Jobs",
    target_new="Microsoft",
    target_true="Apple",
    paraphrase_prompts=("After releasing the Apple II, Steve Jobs founded",),
    neighborhood=(NeighborhoodPrompt("Mark Zuckerberg, the founder of", "Facebook"),),
    portability=(
        PortabilityPrompt(
            "After Y2K, the company Steve Jobs founded released the operating system,", "Windows", "macOS"
        ),
    ),
    extra={"reversion_prompt": "Microsoft is founded by"},
)
PROMPTS = ["Hello there", "A much longer prompt about many things", "x"]


def direct_greedy(model, tok, prompt: str, n: int) -> str:
    """Greedy decoding by hand: argmax of a full forward pass, one token at a time, no cache, no padding."""
    ids = tok(prompt)["input_ids"]
    start = len(ids)
    with torch.no_grad():
        for _ in range(n):
            next_id = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if next_id == tok.eos_token_id:
                break
            ids.append(next_id)
    return tok.decode(ids[start:], skip_special_tokens=True)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-neox"])
def test_batched_left_padded_generation_equals_greedy_by_hand(name: str) -> None:
    loaded = load_model(name, device="cpu")
    batched = greedy_generate(loaded.model, loaded.tokenizer, PROMPTS, max_new_tokens=8, batch_size=3)
    assert batched == [direct_greedy(loaded.model, loaded.tokenizer, p, 8) for p in PROMPTS]


def test_cut_at_stop() -> None:
    assert cut_at_stop(" Paris. It is", [".", "\n"]) == " Paris"
    assert cut_at_stop(" Paris\nB: x.", [".", "\n"]) == " Paris"
    assert cut_at_stop(" Paris", [".", "\n"]) == " Paris"
    assert cut_at_stop("", ["."]) == ""


def test_case_prompts_give_the_five_kinds_in_order_and_skip_missing_ones() -> None:
    kinds = case_prompts(CASE)
    assert [k for k, _ in kinds] == list(PROMPT_KINDS)
    assert kinds[0][1] == "Steve Jobs was the founder of" and kinds[3][1] == "Microsoft is founded by"
    bare = EditCase(case_id="x:1", dataset="x", prompt="{} is in", subject="Paris", target_new="Rome")
    assert case_prompts(bare) == [("original", "Paris is in")]


def test_pre_post_generation_restores_the_model() -> None:
    loaded = load_model("tiny-llama", device="cpu")
    name = "lm_head.weight" if not loaded.model.config.tie_word_embeddings else "model.embed_tokens.weight"
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    weight = loaded.model.get_parameter(name)
    delta = Delta(method="test", params={name: ParamDelta(dense=5 * torch.randn_like(weight))}, case_ids=("hw6:1",))
    records = generate_pre_post(loaded.model, loaded.tokenizer, [CASE], delta, max_new_tokens=6)
    assert [r.stage for r in records] == ["pre"] * 5 + ["post"] * 5
    pre = generate_cases(loaded.model, loaded.tokenizer, [CASE], stage="pre", max_new_tokens=6)
    assert records[:5] == pre
    assert [r.text for r in records[5:]] != [r.text for r in pre]  # the edit changed what it says
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, before[key]), key


@requires_smollm2
def test_smollm2_generation(smollm2) -> None:
    prompts = ["The Eiffel Tower is located in the city of", "The capital of Japan is"]
    texts = greedy_generate(smollm2.model, smollm2.tokenizer, prompts, max_new_tokens=6, stop_strings=[".", ","])
    assert "Paris" in texts[0] and "Tokyo" in texts[1]
    assert texts == [
        greedy_generate(smollm2.model, smollm2.tokenizer, [p], max_new_tokens=6, stop_strings=[".", ","])[0]
        for p in prompts
    ]
