"""The single-edit engine: edit the original model with each case, measure, restore.

Pure Python and torch (no Prefect): :func:`run_shard` is what a Prefect task wraps, and
:func:`run_sweep` runs every missing shard in this process (tests, scripts, the reference path).

Per case: seed torch from (run seed, case id) so a case's numbers do not depend on which shard
ran first; the editor returns a `Delta` (the model is untouched); inside ``delta.applied`` the
post-edit metrics and the ME-PPL perplexities are measured; leaving the context restores the
weights bit for bit. A case that raises becomes an ``edits`` row with status ``error`` and its
message; the shard goes on. A shard's parts are written ``cases``, ``edit_metrics``, ``ppl`` and
``edits`` last: the ``edits`` part is the shard's completion mark, so a shard killed before it is
recomputed and its other parts are replaced, never duplicated.

That is the one-at-a-time loop (``spec.batch == 1``), the reference. With ``spec.batch > 1`` ROME
and r-ROME cases go through the batched engine (:mod:`editcollapse.stages.sweep.batched`): same rows, up to
float rounding, several times fewer CPU seconds per case.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from editcollapse.core.case import EditCase
from editcollapse.stages.sweep.plan import SweepSpec
from editcollapse.warehouse.schemas import DIAGNOSTIC_COLUMNS
from editcollapse.warehouse.store import Warehouse

ERROR_CHARS = 2000


@dataclass
class ShardResult:
    """What a finished shard reports to the flow (the rows themselves are in the warehouse)."""

    shard: int
    n_cases: int
    n_errors: int
    n_collapsed: int
    ppl_means: list[float]
    skipped: bool = False  # already in the warehouse: nothing was computed
    claimed_elsewhere: bool = False  # another worker holds the shard's claim and computes it


@dataclass
class SweepResources:
    """What a worker loads once and reuses for every case of its shards."""

    loaded: Any  # editcollapse.models.LoadedModel
    editor: Any  # editcollapse.editors.api.Editor
    hparams: Any  # the method's editcollapse.editors.hparams.Hparams
    ppl_texts: list[str]
    batched: Any = None  # editcollapse.stages.sweep.batched.BatchedState, built on first use


_WORKER_RESOURCES: dict[int, tuple[tuple[Any, ...], SweepResources]] = {}


def worker_resources(spec: SweepSpec) -> SweepResources:
    """:func:`load_resources`, kept for the next shard of the same model, method and corpus run by
    this thread (a Prefect task per shard then loads the model, samples the context templates and
    prepares the perplexity corpus once per worker, not once per shard). One set per thread: shards
    running in parallel threads never share a model."""
    key = (spec.model, spec.method, spec.device, spec.seed, spec.ppl_corpus)
    held = _WORKER_RESOURCES.get(threading.get_ident())
    if held is None or held[0] != key:
        _WORKER_RESOURCES.pop(threading.get_ident(), None)
        held = (key, load_resources(spec))
        _WORKER_RESOURCES[threading.get_ident()] = held
    return held[1]


def load_resources(spec: SweepSpec) -> SweepResources:
    """Load the model, the editor, its hyperparameters and the perplexity corpus of ``spec``."""
    from editcollapse.datasets import load_ppl_corpus
    from editcollapse.editors.api import get_editor, hparams_for
    from editcollapse.models import load_model

    loaded = load_model(spec.model, device=spec.device, seed=spec.seed)
    hparams = hparams_for(loaded, spec.method)  # model_revision keys the covariance cache
    return SweepResources(
        loaded=loaded,
        editor=get_editor(spec.method),
        hparams=hparams,
        ppl_texts=list(load_ppl_corpus(spec.ppl_corpus).texts),
    )


def case_seed(seed: int, case_id: str) -> int:
    """A per-case torch seed, stable across processes and shard orders."""
    return (seed * 1_000_003 + zlib.crc32(case_id.encode())) % (2**63)


def is_collapsed(ppl_mean: float, threshold: float) -> bool:
    """Collapse: ME-PPL above the threshold — or not a finite number at all (NaN or inf): a model
    whose perplexity cannot be computed is counted as collapsed, never dropped."""
    return not math.isfinite(ppl_mean) or ppl_mean > threshold


def shard_done(warehouse: Warehouse, spec: SweepSpec, shard: int) -> bool:
    return warehouse.has_part("edits", spec.model, spec.method, spec.run_id, shard)


def run_shard(
    spec: SweepSpec,
    shard: int,
    cases: Sequence[EditCase],
    warehouse: Warehouse,
    *,
    resources: SweepResources | None = None,
    on_case: Callable[[str], None] | None = None,
) -> ShardResult:
    """Edit, measure and restore for every case of one shard; write its parts; report counts.

    A shard already in the warehouse is not recomputed (its stored counts are returned). Several
    workers may run the same run id: a shard is computed only by the worker holding its claim
    (:meth:`Warehouse.claim`); the others skip it (``claimed_elsewhere``).
    ``on_case(case_id)`` is called after each case (progress bars).
    """
    if shard_done(warehouse, spec, shard):
        return _stored_result(warehouse, spec, shard)
    if not warehouse.claim(spec.model, spec.method, spec.run_id, shard):
        return ShardResult(
            shard=shard, n_cases=0, n_errors=0, n_collapsed=0, ppl_means=[], skipped=True, claimed_elsewhere=True
        )
    try:
        if shard_done(warehouse, spec, shard):  # finished by the claim's previous holder meanwhile
            return _stored_result(warehouse, spec, shard)
        return _compute_shard(spec, shard, cases, warehouse, resources or worker_resources(spec), on_case)
    finally:
        warehouse.release(spec.model, spec.method, spec.run_id, shard)


def _compute_shard(
    spec: SweepSpec,
    shard: int,
    cases: Sequence[EditCase],
    warehouse: Warehouse,
    resources: SweepResources,
    on_case: Callable[[str], None] | None,
) -> ShardResult:
    rows: dict[str, list[dict[str, Any]]] = {"cases": [], "edit_metrics": [], "ppl": [], "edits": []}
    for case, pre, edit_row, metrics, ppl_row in _outcomes(spec, cases, resources):
        base = {"run_id": spec.run_id, "case_id": case.case_id, "shard": shard}
        rows["cases"].append({**case.to_row(), **base})
        rows["edit_metrics"].extend({**base, "phase": "pre", "metric": k, "value": v} for k, v in pre.items())
        rows["edits"].append({**base, **edit_row})
        rows["edit_metrics"].extend({**base, "phase": "post", "metric": k, "value": v} for k, v in metrics.items())
        if ppl_row is not None:
            rows["ppl"].append({**base, **ppl_row})
        warehouse.touch_claim(spec.model, spec.method, spec.run_id, shard)
        if on_case is not None:
            on_case(case.case_id)
    for table in ("cases", "edit_metrics", "ppl", "edits"):  # edits last: the completion mark
        warehouse.write_part(table, rows[table], model=spec.model, method=spec.method, run_id=spec.run_id, shard=shard)
    ppl_means = [row["ppl_mean"] for row in rows["ppl"]]
    return ShardResult(
        shard=shard,
        n_cases=len(cases),
        n_errors=sum(row["status"] != "ok" for row in rows["edits"]),
        n_collapsed=sum(row["collapsed"] for row in rows["ppl"]),
        ppl_means=ppl_means,
    )


# one case's results: (case, pre-edit metrics, edits row, post-edit metrics, ppl row or None)
Outcome = tuple[EditCase, dict[str, float], dict[str, Any], dict[str, float], "dict[str, Any] | None"]


def _outcomes(spec: SweepSpec, cases: Sequence[EditCase], resources: SweepResources) -> Iterator[Outcome]:
    """Each case's results, in order: from the batched engine when it applies (``spec.batch`` > 1 and
    a ROME/r-ROME editor), else from the one-at-a-time loop (the reference)."""
    from editcollapse.stages.sweep.batched import batched_outcomes, uses_batched_engine

    if uses_batched_engine(spec, resources):
        yield from batched_outcomes(spec, cases, resources)
        return
    model, tokenizer = resources.loaded.model, resources.loaded.tokenizer
    pre, references = _pre_edit(model, tokenizer, cases)
    for case in cases:
        yield (case, pre.get(case.case_id, {}), *_edit_and_measure(spec, case, resources, references.get(case.case_id)))


def _pre_edit(model, tokenizer, cases: Sequence[EditCase]) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Unedited-model metrics and locality references, batched over the shard; a case whose
    inputs break the batch is measured alone (and left out if it fails alone too — its edit
    will fail and say why)."""
    from editcollapse.evaluation.edit_metrics import locality_reference, measure_cases

    try:
        return _pre_batch(model, tokenizer, list(cases), measure_cases, locality_reference)
    except Exception:  # noqa: BLE001 — isolate the bad case below
        pre, refs = {}, {}
        for case in cases:
            try:
                one_pre, one_ref = _pre_batch(model, tokenizer, [case], measure_cases, locality_reference)
            except Exception:  # noqa: BLE001
                continue
            pre.update(one_pre)
            refs.update(one_ref)
        return pre, refs


def _pre_batch(model, tokenizer, cases, measure_cases, locality_reference):
    references = locality_reference(model, tokenizer, cases)
    metrics = measure_cases(model, tokenizer, cases)
    return (
        {c.case_id: m for c, m in zip(cases, metrics, strict=True)},
        {c.case_id: r for c, r in zip(cases, references, strict=True)},
    )


def _edit_and_measure(
    spec: SweepSpec, case: EditCase, resources: SweepResources, reference: Any
) -> tuple[dict[str, Any], dict[str, float], dict[str, Any] | None]:
    """One case: (edits row, post-edit metrics, ppl row or None when the edit failed)."""
    from editcollapse.evaluation.edit_metrics import measure_cases
    from editcollapse.evaluation.perplexity import perplexity

    loaded = resources.loaded
    torch.manual_seed(case_seed(spec.seed, case.case_id))
    clock = _Clock()
    try:
        delta = resources.editor.edit(loaded.model, loaded.tokenizer, loaded.arch, [case], resources.hparams)
    except Exception as error:  # noqa: BLE001 — a bad case is a row, not a dead shard
        return {**_error_row(error), **clock.lap("edit")}, {}, None
    timings = clock.lap("edit")
    try:
        with delta.applied(loaded.model):
            metrics = measure_cases(
                loaded.model, loaded.tokenizer, [case], reference=None if reference is None else [reference]
            )[0]
            result = perplexity(loaded.model, loaded.tokenizer, resources.ppl_texts, batch_size=spec.ppl_batch_size)
    except Exception as error:  # noqa: BLE001
        return {**_error_row(error), **_delta_columns(delta), **timings, **clock.lap("eval")}, {}, None
    row = {"status": "ok", **_delta_columns(delta), **timings, **clock.lap("eval")}
    return row, metrics, _ppl_row(spec, result)


class _Clock:
    """Wall and process-CPU time since the last lap."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        lap = {f"{name}_seconds": wall - self._wall, f"{name}_cpu_seconds": cpu - self._cpu}
        self._wall, self._cpu = wall, cpu
        return lap


def _ppl_row(spec: SweepSpec, result) -> dict[str, Any]:
    per_text = [float(v) for v in result.per_text]
    finite = [v for v in per_text if math.isfinite(v)]
    return {
        "corpus": spec.ppl_corpus,
        "n_texts": len(per_text),
        "ppl_mean": float(result.mean_per_text),
        "ppl_corpus": float(result.corpus),
        "ppl_median": statistics.median(per_text) if per_text else math.nan,
        "ppl_max": max(per_text, key=lambda v: (math.isnan(v), v)) if per_text else math.nan,
        "n_nonfinite": len(per_text) - len(finite),
        "collapsed": is_collapsed(float(result.mean_per_text), spec.threshold),
        "threshold": spec.threshold,
        "ppl_per_text": per_text,
    }


def _delta_norms(delta) -> tuple[float, float]:
    """(‖ΔW‖_F over all parameters, largest spectral norm); a non-finite ΔW (an overflowing
    update) has no SVD: its Frobenius norm is kept (inf/NaN) and its spectral norm is NaN."""
    try:
        norms = delta.norms().values()
    except RuntimeError:
        squares = [float(change.materialize().double().norm()) ** 2 for change in delta.params.values()]
        return math.sqrt(math.fsum(squares)), math.nan
    return (math.sqrt(math.fsum(n["fro"] ** 2 for n in norms)), max((n["spectral"] for n in norms), default=math.nan))


def _delta_columns(delta) -> dict[str, Any]:
    fro, spectral = _delta_norms(delta)
    columns: dict[str, Any] = {
        "hparams_hash": delta.hparams_hash,
        "edited_params": sorted(delta.params),
        "delta_fro": fro,
        "delta_spectral": spectral,
        "diagnostics": json.dumps(delta.diagnostics, sort_keys=True, default=str),
    }
    for name in DIAGNOSTIC_COLUMNS:
        value = delta.diagnostics.get(name)
        if isinstance(value, (bool, int, float)):
            columns[name] = value
    return columns


def _error_row(error: BaseException) -> dict[str, Any]:
    return {
        "status": "error",
        "error_type": type(error).__name__,
        "error": "".join(traceback.format_exception_only(error)).strip()[:ERROR_CHARS],
    }


def _stored_result(warehouse: Warehouse, spec: SweepSpec, shard: int) -> ShardResult:
    edits = (
        warehouse.read_part("edits", spec.model, spec.method, spec.run_id, shard, columns=["status"])
        .column("status")
        .to_pylist()
    )
    ppl = warehouse.read_part(
        "ppl", spec.model, spec.method, spec.run_id, shard, columns=["ppl_mean", "collapsed"]
    ).to_pydict()
    return ShardResult(
        shard=shard,
        n_cases=len(edits),
        n_errors=sum(s != "ok" for s in edits),
        n_collapsed=sum(ppl["collapsed"]),
        ppl_means=ppl["ppl_mean"],
        skipped=True,
    )
