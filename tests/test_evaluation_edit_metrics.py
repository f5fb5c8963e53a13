"""Edit metrics against values computed independently (bigram table lookups, direct model calls)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import requires_smollm2
from evaluation_bigram import BigramLM, direct_mean_nll, direct_token_accuracy, random_bigram, tokenizer

from editcollapse.core.case import EditCase, NeighborhoodPrompt, PortabilityPrompt
from editcollapse.evaluation.edit_metrics import locality_reference, measure_case, measure_cases

CASE = EditCase(
    case_id="test:1",
    dataset="counterfact",
    prompt="The mother tongue of {} is",
    subject="Kaleri",
    target_new="French",
    target_true="Russian",
    paraphrase_prompts=("Kaleri is a native speaker of", "Kaleri speaks"),
    neighborhood=(
        NeighborhoodPrompt("Smirnov is a native speaker of", "Russian"),
        NeighborhoodPrompt("Ivanov speaks", "Russian"),
    ),
    portability=(PortabilityPrompt("The language cosmonaut Kaleri speaks is", "French", "Russian"),),
)
ZSRE = EditCase(
    case_id="zsre:7",
    dataset="zsre",
    prompt="What river flows through {}?",
    subject="Vienna",
    target_new="Rhine river",
    paraphrase_prompts=("Which river runs through Vienna?",),
    neighborhood=(NeighborhoodPrompt("nq question: who sang thriller", "Michael Jackson"),),
)


def p(model, tok, prompt: str, target: str) -> float:
    return math.exp(-direct_mean_nll(model, tok, prompt, target))


def test_counterfact_metrics_equal_hand_computation() -> None:
    model, tok = random_bigram(seed=3), tokenizer()
    got = measure_case(model, tok, CASE)

    def compare(prompts, better, worse):
        success = [float(p(model, tok, q, better) > p(model, tok, q, worse)) for q in prompts]
        magnitude = [p(model, tok, q, better) - p(model, tok, q, worse) for q in prompts]
        return sum(success) / len(success), sum(magnitude) / len(magnitude)

    expected = {
        "efficacy": compare([CASE.filled_prompt], "French", "Russian"),
        "paraphrase": compare(CASE.paraphrase_prompts, "French", "Russian"),
        "neighborhood": compare([n.prompt for n in CASE.neighborhood], "Russian", "French"),
        "portability": compare([CASE.portability[0].prompt], "French", "Russian"),
    }
    for name, (success, magnitude) in expected.items():
        assert got[f"{name}_success"] == success, name
        assert got[f"{name}_magnitude"] == pytest.approx(magnitude, abs=1e-6), name
    acc = lambda prompts, target: sum(direct_token_accuracy(model, tok, q, target) for q in prompts) / len(prompts)  # noqa: E731
    assert got["rewrite_acc"] == acc([CASE.filled_prompt], "French")
    assert got["rephrase_acc"] == acc(CASE.paraphrase_prompts, "French")
    assert got["neighborhood_acc"] == acc([n.prompt for n in CASE.neighborhood], "Russian")
    assert got["portability_acc"] == acc([CASE.portability[0].prompt], "French")
    assert "locality_acc" not in got  # needs the unedited model's predictions


def test_an_edit_that_makes_the_new_target_certain() -> None:
    """After ' ' the bigram puts almost all mass on 'F', then spells 'French': success 1, accuracy 1."""
    tok = tokenizer()
    table = torch.zeros(len(tok), len(tok))
    ids = tok(" French")["input_ids"]
    for prev, nxt in zip(ids, ids[1:]):
        table[prev, nxt] = 30.0
    got = measure_case(BigramLM(table), tok, CASE)
    assert got["efficacy_success"] == 1.0 and got["paraphrase_success"] == 1.0
    assert got["neighborhood_success"] == 0.0 and got["portability_success"] == 1.0
    assert got["rewrite_acc"] == pytest.approx(6 / 7)  # every token but the leading space
    # " French": P(' ' | 's') = 1/257 (a zero row), the six letters have P ≈ 1 → mean NLL log(257)/7.
    # " Russian": ' ' (1/257), 'R' after ' ' (NLL ≈ 30), six letters after zero rows (1/257 each).
    p_new = math.exp(-math.log(len(tok)) / 7)
    p_true = math.exp(-(7 * math.log(len(tok)) + 30) / 8)
    assert got["efficacy_magnitude"] == pytest.approx(p_new - p_true, rel=1e-6)


def test_zsre_case_has_token_accuracy_but_no_probability_comparisons() -> None:
    model, tok = random_bigram(seed=4), tokenizer()
    got = measure_case(model, tok, ZSRE)
    assert set(got) == {"rewrite_acc", "rephrase_acc", "neighborhood_acc"}
    assert got["rewrite_acc"] == direct_token_accuracy(model, tok, ZSRE.filled_prompt, "Rhine river")


def test_locality_is_agreement_with_the_unedited_predictions() -> None:
    tok = tokenizer()
    pre = random_bigram(seed=5)
    reference = locality_reference(pre, tok, [ZSRE])
    assert measure_case(pre, tok, ZSRE, reference=reference[0])["locality_acc"] == 1.0
    # Flip the argmax after 'i': every answer position whose previous token is 'i' now disagrees.
    post_table = pre.table.detach().clone()
    i_id = tok("i")["input_ids"][0]
    post_table[i_id] = -post_table[i_id]  # flips which token is the argmax after 'i'
    prompt = ZSRE.neighborhood[0].prompt
    prompt_ids = tok(prompt)["input_ids"]
    ids = prompt_ids + tok(" Michael Jackson")["input_ids"]
    previous = ids[len(prompt_ids) - 1 : -1]
    expected = 1 - sum(t == i_id for t in previous) / len(previous)
    got = measure_case(BigramLM(post_table), tok, ZSRE, reference=reference[0])["locality_acc"]
    assert got == pytest.approx(expected) and got < 1.0


def test_batched_equals_one_case_at_a_time_and_errors_are_clear() -> None:
    model, tok = random_bigram(seed=6), tokenizer()
    cases = [CASE, ZSRE, CASE]
    refs = locality_reference(model, tok, cases)
    batched = measure_cases(model, tok, cases, reference=refs, batch_size=4)
    for case, ref, metrics in zip(cases, refs, batched, strict=True):
        single = measure_case(model, tok, case, reference=ref)
        assert single.keys() == metrics.keys()
        for key in single:
            assert metrics[key] == pytest.approx(single[key], abs=1e-6)
    with pytest.raises(ValueError, match="locality references"):
        measure_cases(model, tok, cases, reference=refs[:1])


@requires_smollm2
def test_smollm2_knows_the_true_fact_before_an_edit(smollm2) -> None:
    from editcollapse.evaluation.scoring import score_targets

    case = EditCase(
        case_id="t:eiffel",
        dataset="counterfact",
        prompt="{} is located in the city of",
        subject="The Eiffel Tower",
        target_new="Rome",
        target_true="Paris",
        paraphrase_prompts=("The Eiffel Tower, the famous landmark, stands in",),
        neighborhood=(NeighborhoodPrompt("The Louvre museum is located in the city of", "Paris"),),
    )
    got = measure_case(smollm2.model, smollm2.tokenizer, case)
    assert got["efficacy_success"] == 0.0 and got["neighborhood_success"] == 1.0
    new, true = score_targets(
        smollm2.model, smollm2.tokenizer, [(case.filled_prompt, "Rome"), (case.filled_prompt, "Paris")]
    )
    assert got["efficacy_magnitude"] == pytest.approx(math.exp(-new.mean_nll) - math.exp(-true.mean_nll))
    assert got["efficacy_magnitude"] < 0
