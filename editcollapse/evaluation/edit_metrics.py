"""Edit metrics of one model on edit cases, as ROME/MEMIT (CounterFact) and EasyEdit/MEND (ZsRE) define them.

Call the same functions on the unedited ("pre") and the edited ("post") model; the caller tags
the stage. All metrics of all cases come from one batched :func:`score_targets` call.

Probability comparisons (ROME ``test_batch_prediction`` + ``summarize.py``), for cases with a
``target_true``. A target's score is its mean token NLL, ``P = exp(-mean NLL)``:

* ``efficacy_success`` — P(new) > P(true) on the edit prompt; ``efficacy_magnitude`` = P(new) − P(true).
* ``paraphrase_success`` / ``_magnitude`` — the same, averaged over the paraphrase prompts.
* ``neighborhood_success`` — P(expected) > P(new) on each neighborhood prompt (its expected answer
  is CounterFact's true object), ``neighborhood_magnitude`` = P(expected) − P(new); averaged.
* ``portability_success`` / ``_magnitude`` — P(new) > P(true) on portability prompts that carry
  both answers.

Token accuracy (EasyEdit ``test_prediction_acc``, MEND): share of target tokens that are the
argmax under teacher forcing.

* ``rewrite_acc`` (edit prompt, target_new), ``rephrase_acc`` (paraphrases, target_new),
  ``portability_acc`` (portability prompts, their target_new), ``neighborhood_acc`` (neighborhood
  prompts, their expected answer).
* ``locality_acc`` — agreement of this model's argmax tokens with the unedited model's at the
  neighborhood answer positions (EasyEdit's locality); only when ``reference`` is given, from
  :func:`locality_reference` on the unedited model.

Lists (paraphrases, neighbours, portability prompts) are averaged within a case first. A metric
whose inputs a case lacks is left out of that case's dict, never filled with a made-up value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.evaluation.scoring import TargetScore, score_targets

# A case's locality reference: argmax tokens at each neighborhood prompt's answer positions.
LocalityReference = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class _Plan:
    """Which (prompt, target) pairs one case needs, as index ranges into the flat pair list."""

    pairs: list[tuple[str, str]]
    slots: dict[str, list[int]]


def _plan(case: EditCase) -> _Plan:
    pairs: list[tuple[str, str]] = []
    slots: dict[str, list[int]] = {}

    def add(slot: str, prompt: str, target: str) -> None:
        slots.setdefault(slot, []).append(len(pairs))
        pairs.append((prompt, target))

    add("rewrite_new", case.filled_prompt, case.target_new)
    for prompt in case.paraphrase_prompts:
        add("rephrase_new", prompt, case.target_new)
    for neighbour in case.neighborhood:
        add("neighbour_expected", neighbour.prompt, neighbour.target)
    for item in case.portability:
        add("portability_new", item.prompt, item.target_new)
    if case.target_true is not None:
        add("rewrite_true", case.filled_prompt, case.target_true)
        for prompt in case.paraphrase_prompts:
            add("rephrase_true", prompt, case.target_true)
        for neighbour in case.neighborhood:
            add("neighbour_new", neighbour.prompt, case.target_new)
    for item in case.portability:
        if item.target_true is not None:
            add("portability_pair_new", item.prompt, item.target_new)
            add("portability_pair_true", item.prompt, item.target_true)
    return _Plan(pairs, slots)


def case_pairs(case: EditCase) -> tuple[list[tuple[str, str]], dict[str, list[int]]]:
    """The (prompt, target) pairs a case's metrics need, and which of them fill each slot
    (``rewrite_new``, ``neighbour_expected`` …) — for scorers other than :func:`score_targets`."""
    plan = _plan(case)
    return plan.pairs, plan.slots


def metrics_from_scores(
    got: dict[str, list[TargetScore]], reference: LocalityReference | None = None
) -> dict[str, float]:
    """A case's metrics from its slots' scores (what :func:`measure_cases` returns for it)."""
    return _metrics(got, reference)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _compare(better: Sequence[TargetScore], worse: Sequence[TargetScore]) -> tuple[float, float]:
    """(share where ``better`` beats ``worse`` by mean NLL, mean of P(better) − P(worse))."""
    success = [float(b.mean_nll < w.mean_nll) for b, w in zip(better, worse, strict=True)]
    magnitude = [math.exp(-b.mean_nll) - math.exp(-w.mean_nll) for b, w in zip(better, worse, strict=True)]
    return _mean(success), _mean(magnitude)


def _agreement(scores: Sequence[TargetScore], reference: LocalityReference) -> float:
    if len(reference) != len(scores):
        raise ValueError(f"locality reference has {len(reference)} neighborhood prompts, the case {len(scores)}")
    per_prompt = []
    for score, expected in zip(scores, reference, strict=True):
        if len(expected) != score.n_tokens:
            raise ValueError("locality reference tokens do not match the neighborhood answer's tokens")
        per_prompt.append(_mean([float(a == b) for a, b in zip(score.predictions, expected, strict=True)]))
    return _mean(per_prompt)


def _metrics(got: dict[str, list[TargetScore]], reference: LocalityReference | None) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, slot in (
        ("rewrite_acc", "rewrite_new"),
        ("rephrase_acc", "rephrase_new"),
        ("neighborhood_acc", "neighbour_expected"),
        ("portability_acc", "portability_new"),
    ):
        if slot in got:
            metrics[name] = _mean([s.token_accuracy for s in got[slot]])
    for name, better, worse in (
        ("efficacy", "rewrite_new", "rewrite_true"),
        ("paraphrase", "rephrase_new", "rephrase_true"),
        ("neighborhood", "neighbour_expected", "neighbour_new"),
        ("portability", "portability_pair_new", "portability_pair_true"),
    ):
        if worse in got:
            metrics[f"{name}_success"], metrics[f"{name}_magnitude"] = _compare(got[better], got[worse])
    if reference is not None and "neighbour_expected" in got:
        metrics["locality_acc"] = _agreement(got["neighbour_expected"], reference)
    return metrics


def _score_plans(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cases: Sequence[EditCase], batch_size: int
) -> list[dict[str, list[TargetScore]]]:
    plans = [_plan(case) for case in cases]
    flat = [pair for plan in plans for pair in plan.pairs]
    scores = score_targets(model, tokenizer, flat, batch_size=batch_size)
    results, offset = [], 0
    for plan in plans:
        results.append({slot: [scores[offset + i] for i in indices] for slot, indices in plan.slots.items()})
        offset += len(plan.pairs)
    return results


def measure_cases(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cases: Sequence[EditCase],
    *,
    reference: Sequence[LocalityReference] | None = None,
    batch_size: int = 32,
) -> list[dict[str, float]]:
    """The metrics of every case (see the module doc), batched across cases, in input order."""
    if reference is not None and len(reference) != len(cases):
        raise ValueError(f"{len(reference)} locality references for {len(cases)} cases")
    scored = _score_plans(model, tokenizer, cases, batch_size)
    refs: Sequence[LocalityReference | None] = reference if reference is not None else [None] * len(cases)
    return [_metrics(got, ref) for got, ref in zip(scored, refs, strict=True)]


def measure_case(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    case: EditCase,
    *,
    reference: LocalityReference | None = None,
) -> dict[str, float]:
    """The metrics of one case (see the module doc)."""
    return measure_cases(model, tokenizer, [case], reference=None if reference is None else [reference])[0]


def locality_reference(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cases: Sequence[EditCase], *, batch_size: int = 32
) -> list[LocalityReference]:
    """The unedited model's argmax tokens at each case's neighborhood answers (for ``locality_acc``)."""
    pairs = [[(n.prompt, n.target) for n in case.neighborhood] for case in cases]
    scores = score_targets(model, tokenizer, [p for group in pairs for p in group], batch_size=batch_size)
    references, offset = [], 0
    for group in pairs:
        references.append(tuple(s.predictions for s in scores[offset : offset + len(group)]))
        offset += len(group)
    return references
