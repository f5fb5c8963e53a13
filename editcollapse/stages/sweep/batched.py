"""The batched sweep engine: the cases of a shard edited and measured ``spec.batch`` at a time.

For methods whose registry entry names a batched class (:attr:`MethodSpec.batched
<editcollapse.editors.api.MethodSpec>`: ROME and r-ROME's rank-one
:class:`~editcollapse.editors.rome.batched.BatchedROME`), the updates of a group of cases are computed
together and all the edited models are evaluated in shared forward passes (per-row rank-one hooks, no
weight copies, no restore); context templates, C⁻¹ and the perplexity corpus (tokenised, its hidden
states below the edited layer) are prepared once per worker. The outcomes are those of the
one-at-a-time engine (:mod:`~editcollapse.stages.sweep.single`, ``batch=1``, the reference), equal up
to float rounding; ``edit_seconds``/``eval_seconds`` (and CPU seconds) are the group's time divided by
its cases, and each ``edits`` row's diagnostics carry ``batch_size``.

Other methods stay on the one-at-a-time engine: MEMIT's single-case update is a delta across several
layers (batchable with hooks on each, not done), FT's is dense (no low-rank hook; a dense per-row
weight would be a weight copy per case).

A case that fails (subject not found, …) is a failed outcome and the rest of its group goes on; if a
group fails as a whole for an unforeseen reason, its cases are redone one per group, so only the
failing case fails. If the engine itself cannot be prepared (the method's batched class or the
perplexity corpus cannot be built), every case it would have computed is a failed outcome saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import torch
from torch import nn

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta
from editcollapse.evaluation.batched import CaseScores, EditedForward, PerplexityCorpus, RankOne, locality_references
from editcollapse.evaluation.edit_metrics import metrics_from_scores
from editcollapse.evaluation.perplexity import PerplexityResult
from editcollapse.stages.sweep.outcome import CaseOutcome, Clock, delta_columns, error_row, ppl_row
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.resources import SweepResources

T = TypeVar("T")


class RankOneUpdate(Protocol):
    """One case's update as a rank-one change ``u rightᵀ`` of the edited module's weight."""

    u: torch.Tensor
    right: torch.Tensor


class BatchedUpdater(Protocol):
    """What the engine needs of a method's batched class, built as ``cls(model, tokenizer, arch, hparams,
    method=...)``: the edited layer and module, the updates of many independent single edits at once
    (an exception in place of each case whose update failed), and one update as a `Delta`."""

    layer: int
    rewrite: nn.Module

    def updates(self, cases: list[EditCase]) -> Sequence[RankOneUpdate | Exception]: ...

    def delta(self, case: EditCase, update: Any) -> Delta: ...


@dataclass(frozen=True)
class Prepared(Generic[T]):
    """Something the engine builds once per worker, or the exception that prevented it. The exception
    is kept, not raised: each case that needs the value fails with it (as each case of the
    one-at-a-time engine would), so the shard still completes with error rows instead of dying."""

    value: T | None = None
    error: Exception | None = None

    @classmethod
    def attempt(cls, build: Callable[[], T]) -> Prepared[T]:
        try:
            return cls(value=build())
        except Exception as error:  # noqa: BLE001 — kept for the cases' rows (see the class docstring)
            return cls(error=error)

    def get(self) -> T:
        """The value; the preparation's exception if there is none."""
        if self.error is not None:
            raise self.error
        return cast(T, self.value)


@dataclass(frozen=True)
class BatchedSetup:
    """What the engine prepares once per worker (kept with the worker's :class:`SweepResources`)."""

    updater: BatchedUpdater
    forward: EditedForward
    corpus: Prepared[PerplexityCorpus]


def prepare_batched(spec: SweepConfig, resources: SweepResources, batched_class: type) -> Prepared[BatchedSetup]:
    """Build ``batched_class`` on the worker's model and the perplexity corpus behind its edited layer."""
    loaded = resources.loaded
    updater: Prepared[BatchedUpdater] = Prepared.attempt(
        lambda: batched_class(loaded.model, loaded.tokenizer, loaded.arch, resources.hparams, method=spec.method)
    )
    if updater.error is not None:
        return Prepared(error=updater.error)
    built = updater.get()
    forward = EditedForward(loaded.model, loaded.tokenizer, loaded.arch, built.layer, built.rewrite)
    corpus = Prepared.attempt(lambda: PerplexityCorpus(forward, resources.ppl_texts, batch_size=spec.ppl_batch_size))
    return Prepared(value=BatchedSetup(updater=built, forward=forward, corpus=corpus))


def groups_of(cases: Sequence[EditCase], batch: int) -> list[list[EditCase]]:
    """``cases`` in consecutive groups of at most ``batch``, as equal in size as possible."""
    n_groups = -(-len(cases) // batch)
    size, extra = divmod(len(cases), n_groups) if n_groups else (0, 0)
    groups, start = [], 0
    for index in range(n_groups):
        stop = start + size + (index < extra)
        groups.append(list(cases[start:stop]))
        start = stop
    return groups


class _GroupFailed(Exception):
    """A group of several cases failed as a whole: redo it one case per group."""


def _share(lap: dict[str, float], n: int) -> dict[str, float]:
    return {name: value / n for name, value in lap.items()}


class BatchedEngine:
    """The cases of a shard edited and measured ``spec.batch`` at a time (see the module docstring)."""

    def __init__(self, spec: SweepConfig, setup: Prepared[BatchedSetup]) -> None:
        self.spec, self.setup = spec, setup

    @classmethod
    def for_resources(cls, spec: SweepConfig, resources: SweepResources, batched_class: type) -> BatchedEngine:
        """The engine for ``spec``, its set-up prepared once and kept with the worker's ``resources``."""
        key = ("batched", spec.method, spec.ppl_batch_size, tuple(resources.ppl_texts))
        return cls(spec, resources.derived(key, lambda: prepare_batched(spec, resources, batched_class)))

    def outcomes(self, cases: Sequence[EditCase]) -> Iterator[CaseOutcome]:
        """Each case's outcome, in order, group by group."""
        for group in groups_of(cases, self.spec.batch):
            try:
                outcomes = self._group(group)
            except _GroupFailed:
                outcomes = [outcome for case in group for outcome in self._group([case])]
            yield from outcomes

    def _group(self, group: list[EditCase]) -> list[CaseOutcome]:
        n = len(group)
        if self.setup.error is not None:
            return [
                CaseOutcome.failed(
                    case, {}, {**error_row(self.setup.error), "edit_seconds": 0.0, "edit_cpu_seconds": 0.0}
                )
                for case in group
            ]
        setup = self.setup.get()
        try:
            scorer = CaseScores(setup.forward, group)
            pre_scores = scorer.scores()
            references = locality_references(pre_scores)
            pre = {index: metrics_from_scores(got) for index, got in pre_scores.items()}
            clock = Clock()
            updates = setup.updater.updates(group)
        except Exception as error:  # noqa: BLE001
            if n > 1:
                raise _GroupFailed from error
            return [CaseOutcome.failed(group[0], {}, {**error_row(error), **Clock().lap("edit")})]
        edit_lap = _share(clock.lap("edit"), n)
        deltas: dict[int, tuple[Delta, RankOne]] = {}
        edit_rows: dict[int, dict[str, Any]] = {}
        for index, (case, update) in enumerate(zip(group, updates, strict=True)):
            if isinstance(update, Exception):
                edit_rows[index] = {**error_row(update), **edit_lap}
                continue
            delta = setup.updater.delta(case, update)
            delta.diagnostics["batch_size"] = n
            deltas[index] = (delta, (update.u, update.right))
            edit_rows[index] = {**delta_columns(delta), **edit_lap}
        post: dict[int, dict[str, float]] = {}
        ppl: dict[int, PerplexityResult] = {}
        if deltas:
            try:
                corpus = setup.corpus.get()
                edits = [deltas[index][1] if index in deltas else None for index in range(n)]
                post = scorer.metrics(edits, [references.get(index) for index in range(n)])
                ordered = sorted(deltas)
                ppl = dict(zip(ordered, corpus.perplexities([edits[index] for index in ordered]), strict=True))
            except Exception as error:  # noqa: BLE001
                if len(deltas) > 1:
                    raise _GroupFailed from error
                only = next(iter(deltas))
                edit_rows[only] = {**error_row(error), **edit_rows[only], "status": "error", **clock.lap("eval")}
                return [
                    CaseOutcome.failed(case, pre.get(index, {}), edit_rows[index]) for index, case in enumerate(group)
                ]
        eval_lap = _share(clock.lap("eval"), max(len(deltas), 1))
        outcomes = []
        for index, case in enumerate(group):
            if index in deltas:
                edit_rows[index].update(eval_lap)
                if index in scorer.errors:
                    edit_rows[index] = {**edit_rows[index], **error_row(scorer.errors[index])}
                else:
                    edit_rows[index]["status"] = "ok"
            row = edit_rows[index]
            if row["status"] == "ok":
                outcomes.append(
                    CaseOutcome.ok(case, pre.get(index, {}), row, post.get(index, {}), ppl_row(self.spec, ppl[index]))
                )
            else:
                outcomes.append(CaseOutcome.failed(case, pre.get(index, {}), row))
        return outcomes
