"""The one-at-a-time sweep engine, the reference: edit the original model with each case, measure, restore.

Per case: seed torch from (run seed, case id) so a case's numbers do not depend on which shard ran
first; the editor returns a `Delta` (the model is untouched); inside ``delta.applied`` the post-edit
metrics and the ME-PPL perplexities are measured; leaving the context restores the weights bit for
bit. A case that raises becomes a failed outcome (an ``edits`` row with status ``error`` and its
message); the shard goes on.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import torch

from editcollapse.core.case import EditCase
from editcollapse.evaluation.edit_metrics import LocalityReference, locality_reference, measure_cases
from editcollapse.evaluation.perplexity import perplexity
from editcollapse.stages.sweep.outcome import CaseOutcome, Clock, delta_columns, error_row, ppl_row
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.resources import SweepResources


def case_seed(seed: int, case_id: str) -> int:
    """A per-case torch seed, stable across processes and shard orders."""
    return (seed * 1_000_003 + zlib.crc32(case_id.encode())) % (2**63)


class SingleEngine:
    """Each case edited, measured and restored on its own, with the resources' editor (any method)."""

    def __init__(self, spec: SweepConfig, resources: SweepResources) -> None:
        self.spec, self.resources = spec, resources

    def outcomes(self, cases: Sequence[EditCase]) -> Iterator[CaseOutcome]:
        """Each case's outcome, in order (pre-edit metrics measured for the whole shard first)."""
        loaded = self.resources.loaded
        pre, references = _pre_edit(loaded.model, loaded.tokenizer, cases)
        for case in cases:
            yield self._edit_and_measure(case, pre.get(case.case_id, {}), references.get(case.case_id))

    def _edit_and_measure(
        self, case: EditCase, pre: dict[str, float], reference: LocalityReference | None
    ) -> CaseOutcome:
        spec, resources = self.spec, self.resources
        loaded = resources.loaded
        torch.manual_seed(case_seed(spec.seed, case.case_id))
        clock = Clock()
        try:
            delta = resources.editor.edit(loaded.model, loaded.tokenizer, loaded.arch, [case], resources.hparams)
        except Exception as error:  # noqa: BLE001 — a bad case is a row, not a dead shard
            return CaseOutcome.failed(case, pre, {**error_row(error), **clock.lap("edit")})
        timings = clock.lap("edit")
        try:
            with delta.applied(loaded.model):
                metrics = measure_cases(
                    loaded.model, loaded.tokenizer, [case], reference=None if reference is None else [reference]
                )[0]
                result = perplexity(loaded.model, loaded.tokenizer, resources.ppl_texts, batch_size=spec.ppl_batch_size)
        except Exception as error:  # noqa: BLE001
            return CaseOutcome.failed(
                case, pre, {**error_row(error), **delta_columns(delta), **timings, **clock.lap("eval")}
            )
        row = {"status": "ok", **delta_columns(delta), **timings, **clock.lap("eval")}
        return CaseOutcome.ok(case, pre, row, metrics, ppl_row(spec, result))


def _pre_edit(
    model, tokenizer, cases: Sequence[EditCase]
) -> tuple[dict[str, dict[str, float]], dict[str, LocalityReference]]:
    """Unedited-model metrics and locality references, batched over the shard; a case whose
    inputs break the batch is measured alone (and left out if it fails alone too — its edit
    will fail and say why)."""
    try:
        return _pre_batch(model, tokenizer, list(cases))
    except Exception:  # noqa: BLE001 — isolate the bad case below
        pre, refs = {}, {}
        for case in cases:
            try:
                one_pre, one_ref = _pre_batch(model, tokenizer, [case])
            except Exception:  # noqa: BLE001
                continue
            pre.update(one_pre)
            refs.update(one_ref)
        return pre, refs


def _pre_batch(
    model, tokenizer, cases: list[EditCase]
) -> tuple[dict[str, dict[str, float]], dict[str, LocalityReference]]:
    references = locality_reference(model, tokenizer, cases)
    metrics = measure_cases(model, tokenizer, cases)
    return (
        {c.case_id: m for c, m in zip(cases, metrics, strict=True)},
        {c.case_id: r for c, r in zip(cases, references, strict=True)},
    )
