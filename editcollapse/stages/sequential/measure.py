"""The trajectory's measurement after a step: ME-PPL perplexity and the success of every edit so far.

Built on the evaluation package (``perplexity`` and ``measure_cases``). An edit's success is
CounterFact's efficacy (P(target_new) > P(target_true) on the edit prompt); a case without a
``target_true`` (ZsRE-style) uses the token accuracy of target_new (``rewrite_acc``) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from editcollapse.core.case import EditCase
from editcollapse.models.loading import LoadedModel
from editcollapse.stages.sequential.trajectory import Measurement


def edit_success(metrics: dict[str, float]) -> float:
    """One number for "does the edit hold": efficacy success, else target_new token accuracy."""
    if "efficacy_success" in metrics:
        return metrics["efficacy_success"]
    if "rewrite_acc" in metrics:
        return metrics["rewrite_acc"]
    raise ValueError(f"edit metrics carry neither efficacy_success nor rewrite_acc: {sorted(metrics)}")


@dataclass(frozen=True)
class CorpusEvaluator:
    """Perplexity on ``texts`` (the ME-PPL corpus) plus edit success of the cases edited so far."""

    texts: tuple[str, ...]
    batch_size: int = 16
    successes: bool = True  # False: perplexity only (a second corpus), ``successes`` left empty

    def __call__(self, loaded: LoadedModel, cases: Sequence[EditCase]) -> Measurement:
        from editcollapse.evaluation.edit_metrics import measure_cases
        from editcollapse.evaluation.perplexity import perplexity

        result = perplexity(loaded.model, loaded.tokenizer, list(self.texts), batch_size=self.batch_size)
        metrics = measure_cases(loaded.model, loaded.tokenizer, list(cases)) if cases and self.successes else []
        return Measurement(
            ppl=result.mean_per_text, ppl_corpus_level=result.corpus, successes=[edit_success(m) for m in metrics]
        )


class BaselineOnce:
    """An evaluator that measures the unedited model (no cases edited yet: step 0) once per model.

    Every trajectory of a run starts from the same unedited weights (the trajectory runner restores
    them bit for bit), so step 0's measurement is the same each time; with ME-PPL-1k it costs
    minutes on a CPU, so it is computed for the first trajectory and reused by the others.
    """

    def __init__(self, evaluate: Callable[[LoadedModel, Sequence[EditCase]], Measurement]) -> None:
        self.evaluate = evaluate
        self._baseline: list[tuple[object, Measurement]] = []  # (model object, its measurement)

    def __call__(self, loaded: LoadedModel, cases: Sequence[EditCase]) -> Measurement:
        if cases:
            return self.evaluate(loaded, cases)
        for model, measurement in self._baseline:
            if model is loaded.model:
                return measurement
        measurement = self.evaluate(loaded, cases)
        self._baseline.append((loaded.model, measurement))
        return measurement
