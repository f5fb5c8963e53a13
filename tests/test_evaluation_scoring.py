"""Teacher-forced target scoring: tokenisation of the leading space, exact multi-token log-probs, padding."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import requires_smollm2
from evaluation_bigram import BigramLM, direct_logprobs, random_bigram, tokenizer

from editcollapse.core.tokens import encode_pair
from editcollapse.evaluation.scoring import score_targets
from editcollapse.models import load_model

PAIRS = [
    ("The capital of France is", "Paris"),
    ("Q: who wrote Hamlet? A:", "William Shakespeare"),
    ("x", "y"),
    ("A much longer prompt that needs padding in a batch, surely", "a long target here"),
]


def test_leading_space_is_one_explicit_token_before_the_target() -> None:
    tok = tokenizer()
    prompt_ids, target_ids = encode_pair(tok, "The capital is", "Paris")
    assert target_ids == tok(" Paris")["input_ids"]
    assert tok.convert_ids_to_tokens(target_ids)[0] == "Ġ" and len(target_ids) == 6
    # A trailing space on the prompt is not doubled, nor a leading space on the target.
    assert encode_pair(tok, "The capital is ", "Paris") == (prompt_ids, target_ids)
    assert encode_pair(tok, "The capital is", " Paris") == (prompt_ids, target_ids)


def test_bad_pairs_are_refused() -> None:
    tok = tokenizer()
    with pytest.raises(ValueError, match="empty target"):
        encode_pair(tok, "prompt", "  ")
    with pytest.raises(ValueError, match="empty prompt"):
        encode_pair(tok, "", "x")


def test_logprobs_and_predictions_equal_a_hand_computation() -> None:
    model, tok = random_bigram(seed=1), tokenizer()
    for (prompt, target), score in zip(PAIRS, score_targets(model, tok, PAIRS, batch_size=3), strict=True):
        prompt_ids = tok(prompt)["input_ids"]
        ids = prompt_ids + tok(" " + target)["input_ids"]
        expected = direct_logprobs(model, ids, len(prompt_ids))
        assert score.n_tokens == len(target) + 1  # multi-token: one token per byte, plus the space
        assert score.logprobs == pytest.approx(expected, abs=1e-5)
        assert score.sum_logprob == pytest.approx(math.fsum(expected), abs=1e-4)
        assert score.mean_nll == pytest.approx(-math.fsum(expected) / len(expected), abs=1e-5)
        argmax = [int(model.table[ids[i - 1]].argmax()) for i in range(len(prompt_ids), len(ids))]
        assert list(score.predictions) == argmax
        assert score.token_accuracy == sum(a == b for a, b in zip(argmax, score.target_ids)) / score.n_tokens


def test_token_accuracy_is_one_when_every_target_token_is_the_argmax() -> None:
    tok = tokenizer()
    ids = tok("ab cd")["input_ids"]
    table = torch.zeros(len(tok), len(tok))
    for prev, nxt in zip(ids, ids[1:]):
        table[prev, nxt] = 5.0
    (score,) = score_targets(BigramLM(table), tok, [("ab", "cd")])
    assert score.token_accuracy == 1.0
    (wrong,) = score_targets(BigramLM(table), tok, [("ab", "cx")])
    assert wrong.token_accuracy == pytest.approx(2 / 3)  # " " and "c" right, "x" wrong


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-neox"])
def test_padding_and_batch_size_do_not_change_scores(name: str) -> None:
    """Real attention: batched right-padded scores equal one-pair-at-a-time scores (abs 1e-5)."""
    loaded = load_model(name, device="cpu")
    one = score_targets(loaded.model, loaded.tokenizer, PAIRS, batch_size=1)
    for batch_size in (2, 3, 64):
        many = score_targets(loaded.model, loaded.tokenizer, PAIRS, batch_size=batch_size)
        for a, b in zip(one, many, strict=True):
            assert a.target_ids == b.target_ids and a.predictions == b.predictions
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    # And equal a direct unpadded forward pass.
    for (_prompt, _target), score in zip(PAIRS, one, strict=True):
        ids = list(score.prompt_ids + score.target_ids)
        with torch.no_grad():
            logits = loaded.model(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        n = len(score.prompt_ids)
        expected = [float(logp[i - 1, ids[i]]) for i in range(n, len(ids))]
        assert score.logprobs == pytest.approx(expected, abs=1e-5)


def test_training_flag_is_restored() -> None:
    loaded = load_model("tiny-gpt2", device="cpu")
    loaded.model.train()
    score_targets(loaded.model, loaded.tokenizer, PAIRS[:1])
    assert loaded.model.training


@requires_smollm2
def test_smollm2_multi_token_leading_space_target(smollm2) -> None:
    tok, model = smollm2.tokenizer, smollm2.model
    prompt, target = "The Eiffel Tower is located in the city of", "Saint Petersburg"
    prompt_ids, target_ids = encode_pair(tok, prompt, target)
    assert prompt_ids == tok(prompt)["input_ids"]
    assert target_ids == tok(" " + target, add_special_tokens=False)["input_ids"]
    assert len(target_ids) >= 2 and tok.decode(target_ids) == " Saint Petersburg"
    (score,) = score_targets(model, tok, [(prompt, target)])
    ids = torch.tensor([prompt_ids + target_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    expected = [float(logp[len(prompt_ids) + j - 1, t]) for j, t in enumerate(target_ids)]
    assert score.logprobs == pytest.approx(expected, abs=1e-4)
    (paris,) = score_targets(model, tok, [(prompt, "Paris")])
    assert paris.mean_nll < score.mean_nll  # the model knows where the Eiffel Tower is
