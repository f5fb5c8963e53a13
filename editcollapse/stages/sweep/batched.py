"""The sweep's batched engine: the cases of a shard edited and measured ``spec.batch`` at a time.

For ROME and r-ROME (rank-one updates) :mod:`editcollapse.batched` computes the updates of a group of
cases together and evaluates all the edited models in shared forward passes (per-row rank-one hooks,
no weight copies, no restore); context templates, C⁻¹ and the perplexity corpus (tokenised, its
hidden states below the edited layer) are prepared once per worker. The rows written are those of
the one-at-a-time loop (:mod:`editcollapse.stages.sweep.engine`, ``batch=1``, the reference), equal up to
float rounding; ``edit_seconds``/``eval_seconds`` (and CPU seconds) are the group's time divided by
its cases, and each ``edits`` row's diagnostics carry ``batch_size``.

Other methods stay on the one-at-a-time path: MEMIT's single-case update is a delta across several
layers (batchable with hooks on each, not done), FT's is dense (no low-rank hook; a dense per-row
weight would be a weight copy per case).

A case that fails (subject not found, …) is an error row and the rest of its group goes on; if a
group fails as a whole for an unforeseen reason, its cases are redone one per group, so only the
failing case becomes an error row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.stages.sweep.engine import Outcome, SweepResources, _Clock, _delta_columns, _error_row, _ppl_row
from editcollapse.stages.sweep.plan import SweepSpec


def uses_batched_engine(spec: SweepSpec, resources: SweepResources) -> bool:
    """Whether ``spec``'s cases go through the batched engine (batch > 1 and a ROME/r-ROME editor)."""
    from editcollapse.editors.rome.editor import ROMEEditor

    return spec.batch > 1 and isinstance(resources.editor, ROMEEditor)


@dataclass
class BatchedState:
    """What the batched engine prepares once per worker (kept on the :class:`SweepResources`)."""

    key: tuple[Any, ...]
    engine: Any  # editcollapse.editors.rome.batched.BatchedROME, or the exception that prevented it
    forward: Any  # editcollapse.evaluation.batched.EditedForward
    corpus: Any  # editcollapse.evaluation.batched.PerplexityCorpus, or the exception that prevented it


def batched_state(spec: SweepSpec, resources: SweepResources) -> BatchedState:
    """The worker's :class:`BatchedState` for ``spec`` (built on first use)."""
    from editcollapse.editors.rome.batched import BatchedROME
    from editcollapse.evaluation.batched import EditedForward, PerplexityCorpus

    key = (resources.editor.method, spec.ppl_batch_size, tuple(resources.ppl_texts))
    state = getattr(resources, "batched", None)
    if state is not None and state.key == key:
        return state
    loaded = resources.loaded
    try:
        engine = BatchedROME(
            loaded.model, loaded.tokenizer, loaded.arch, resources.hparams, method=resources.editor.method
        )
    except Exception as error:  # noqa: BLE001 — every case becomes an error row, as one at a time
        state = BatchedState(key=key, engine=error, forward=None, corpus=None)
    else:
        forward = EditedForward(loaded.model, loaded.tokenizer, loaded.arch, engine.layer, engine.rewrite)
        try:
            corpus: Any = PerplexityCorpus(forward, resources.ppl_texts, batch_size=spec.ppl_batch_size)
        except Exception as error:  # noqa: BLE001
            corpus = error
        state = BatchedState(key=key, engine=engine, forward=forward, corpus=corpus)
    resources.batched = state
    return state


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


def batched_outcomes(spec: SweepSpec, cases: Sequence[EditCase], resources: SweepResources) -> Iterator[Outcome]:
    """Each case's (case, pre metrics, edits row, post metrics, ppl row), in order, group by group."""
    state = batched_state(spec, resources)
    for group in groups_of(cases, spec.batch):
        try:
            outcomes = _group(spec, group, state)
        except _GroupFailed:
            outcomes = [outcome for case in group for outcome in _group(spec, [case], state)]
        yield from outcomes


class _GroupFailed(Exception):
    """A group of several cases failed as a whole: redo it one case per group."""


def _share(lap: dict[str, float], n: int) -> dict[str, float]:
    return {name: value / n for name, value in lap.items()}


def _group(spec: SweepSpec, group: list[EditCase], state: BatchedState) -> list[Outcome]:
    from editcollapse.evaluation.batched import CaseScores, locality_references
    from editcollapse.evaluation.edit_metrics import metrics_from_scores

    n = len(group)
    if isinstance(state.engine, Exception):
        return [
            (case, {}, {**_error_row(state.engine), "edit_seconds": 0.0, "edit_cpu_seconds": 0.0}, {}, None)
            for case in group
        ]
    try:
        scorer = CaseScores(state.forward, group)
        pre_scores = scorer.scores()
        references = locality_references(pre_scores)
        pre = {index: metrics_from_scores(got) for index, got in pre_scores.items()}
        clock = _Clock()
        updates = state.engine.updates(group)
    except Exception as error:  # noqa: BLE001
        if n > 1:
            raise _GroupFailed from error
        return [(group[0], {}, {**_error_row(error), **_Clock().lap("edit")}, {}, None)]
    edit_lap = _share(clock.lap("edit"), n)
    deltas: dict[int, Any] = {}
    edit_rows: dict[int, dict[str, Any]] = {}
    for index, (case, update) in enumerate(zip(group, updates, strict=True)):
        if isinstance(update, Exception):
            edit_rows[index] = {**_error_row(update), **edit_lap}
            continue
        delta = state.engine.delta(case, update)
        delta.diagnostics["batch_size"] = n
        deltas[index] = (delta, (update.u, update.right))
        edit_rows[index] = {**_delta_columns(delta), **edit_lap}
    post: dict[int, dict[str, float]] = {}
    ppl: dict[int, Any] = {}
    if deltas:
        try:
            if isinstance(state.corpus, Exception):
                raise state.corpus
            edits = [deltas[index][1] if index in deltas else None for index in range(n)]
            post = scorer.metrics(edits, [references.get(index) for index in range(n)])
            ordered = sorted(deltas)
            ppl = dict(zip(ordered, state.corpus.perplexities([edits[index] for index in ordered]), strict=True))
        except Exception as error:  # noqa: BLE001
            if len(deltas) > 1:
                raise _GroupFailed from error
            only = next(iter(deltas))
            edit_rows[only] = {**_error_row(error), **edit_rows[only], "status": "error", **clock.lap("eval")}
            return [_outcome(case, index, pre, edit_rows, {}, {}, scorer) for index, case in enumerate(group)]
    eval_lap = _share(clock.lap("eval"), max(len(deltas), 1))
    outcomes = []
    for index, case in enumerate(group):
        if index in deltas:
            edit_rows[index].update(eval_lap)
            if index in scorer.errors:
                edit_rows[index] = {**edit_rows[index], **_error_row(scorer.errors[index])}
            else:
                edit_rows[index]["status"] = "ok"
        outcomes.append(_outcome(case, index, pre, edit_rows, post, ppl, scorer, spec))
    return outcomes


def _outcome(
    case: EditCase,
    index: int,
    pre: dict[int, dict[str, float]],
    edit_rows: dict[int, dict[str, Any]],
    post: dict[int, dict[str, float]],
    ppl: dict[int, Any],
    scorer: Any,
    spec: SweepSpec | None = None,
) -> Outcome:
    row = edit_rows[index]
    ok = row.get("status") == "ok" and index in ppl and spec is not None
    return (
        case,
        pre.get(index, {}),
        row,
        post.get(index, {}) if ok else {},
        _ppl_row(spec, ppl[index]) if ok else None,
    )
