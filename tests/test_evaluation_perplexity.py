"""ME-PPL perplexity: equals a direct per-sentence computation, padding-proof, keeps NaN/inf."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from conftest import requires_smollm2
from evaluation_bigram import BigramLM, tokenizer

from editcollapse.evaluation.perplexity import perplexity
from editcollapse.models import load_model

TEXTS = [
    "The cat sat on the mat.",
    "A much longer sentence, so that batches need padding on the right.",
    "ok",
    "Short one here",
    "Numbers 12345 and symbols #@!",
]


def direct_ppl(model, tok, text: str) -> float:
    """One sentence at a time, the way the paper's metric defines it: exp(loss of model(ids, labels=ids))."""
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        return math.exp(model(ids, labels=ids).loss.item())


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gptj"])
def test_equals_direct_per_sentence_computation(name: str) -> None:
    loaded = load_model(name, device="cpu")
    result = perplexity(loaded.model, loaded.tokenizer, TEXTS, batch_size=2)
    expected = [direct_ppl(loaded.model, loaded.tokenizer, t) for t in TEXTS]
    assert result.per_text == pytest.approx(expected, rel=1e-5)
    assert result.mean_per_text == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    lengths = [len(loaded.tokenizer(t)["input_ids"]) - 1 for t in TEXTS]
    assert result.n_tokens_per_text == lengths and result.n_tokens == sum(lengths)
    corpus = math.exp(sum(math.log(p) * n for p, n in zip(expected, lengths)) / sum(lengths))
    assert result.corpus == pytest.approx(corpus, rel=1e-5)


def test_padding_and_batch_size_do_not_change_any_number() -> None:
    """Tolerance: relative 1e-6 (float32 forward passes of different shapes round differently)."""
    loaded = load_model("tiny-llama", device="cpu")
    reference = perplexity(loaded.model, loaded.tokenizer, TEXTS, batch_size=1)
    for batch_size in (2, 3, 16):
        other = perplexity(loaded.model, loaded.tokenizer, TEXTS, batch_size=batch_size)
        assert other.per_text == pytest.approx(reference.per_text, rel=1e-6)
        assert other.corpus == pytest.approx(reference.corpus, rel=1e-6)
        assert other.n_tokens_per_text == reference.n_tokens_per_text
    again = perplexity(loaded.model, loaded.tokenizer, TEXTS, batch_size=2)
    assert again == perplexity(loaded.model, loaded.tokenizer, TEXTS, batch_size=2)  # deterministic


def test_too_short_texts_give_nan_and_are_kept() -> None:
    loaded = load_model("tiny-gpt2", device="cpu")
    result = perplexity(loaded.model, loaded.tokenizer, ["a", "", "two words"], batch_size=4)
    assert math.isnan(result.per_text[0]) and math.isnan(result.per_text[1])
    assert math.isfinite(result.per_text[2]) and len(result.per_text) == 3
    assert math.isnan(result.mean_per_text)
    assert result.n_tokens == len("two words") - 1
    assert result.corpus == pytest.approx(result.per_text[2])


def test_infinite_nll_gives_inf_not_a_dropped_value() -> None:
    tok = tokenizer()
    table = torch.zeros(len(tok), len(tok))
    a, b = tok("ab")["input_ids"]
    table[a, b] = -math.inf  # 'b' can never follow 'a'
    result = perplexity(BigramLM(table), tok, ["xab", "xyz"])
    assert result.per_text[0] == math.inf and result.per_text[1] == pytest.approx(len(tok))
    assert result.mean_per_text == math.inf and result.corpus == math.inf


def test_bad_input_is_refused() -> None:
    loaded = load_model("tiny-gpt2", device="cpu")
    with pytest.raises(TypeError, match="list of strings"):
        perplexity(loaded.model, loaded.tokenizer, "one string")
    with pytest.raises(ValueError, match="text 1 has"):
        perplexity(loaded.model, loaded.tokenizer, ["fine", "x" * 300])


@requires_smollm2
def test_smollm2_me_ppl_50(smollm2, shared_data) -> None:
    """STACK.md's reference: the unedited SmolLM2's mean per-sentence ME-PPL-50 perplexity ≈ 167."""
    texts = [row["Text"] for row in json.loads((shared_data / "me-ppl" / "ME-PPL_50.json").read_text())]
    start = time.perf_counter()
    result = perplexity(smollm2.model, smollm2.tokenizer, texts, batch_size=8)
    elapsed = time.perf_counter() - start
    print(
        f"ME-PPL-50: mean per-sentence {result.mean_per_text:.4f}, corpus {result.corpus:.4f}, "
        f"{result.n_tokens} tokens, {elapsed:.2f} s"
    )
    assert 160 < result.mean_per_text < 175
    assert result.corpus < result.mean_per_text  # short, hard sentences weigh more in the mean
    for index in range(0, 50, 10):  # a sample of sentences, one at a time
        assert result.per_text[index] == pytest.approx(
            direct_ppl(smollm2.model, smollm2.tokenizer, texts[index]), rel=1e-4
        )
