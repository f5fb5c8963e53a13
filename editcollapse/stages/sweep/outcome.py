"""One case's results, as both sweep engines report them, and the rows they are made of.

Both engines (:mod:`~editcollapse.stages.sweep.single`, :mod:`~editcollapse.stages.sweep.batched`) build
their ``edits`` and ``ppl`` rows with the functions here, so the two write the same columns the same way
and only the order and grouping of the computation differs between them.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.core.collapse import is_collapsed
from editcollapse.core.delta import Delta
from editcollapse.evaluation.perplexity import PerplexityResult
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.warehouse.schemas import DIAGNOSTIC_COLUMNS

ERROR_CHARS = 2000


@dataclass(frozen=True)
class CaseOutcome:
    """One case's results: its pre-edit metrics, its ``edits`` row, and — only when the edit was made
    and measured — its post-edit metrics and its ``ppl`` row. Build it with :meth:`ok` or
    :meth:`failed`, which say which of the two it is."""

    case: EditCase
    pre: dict[str, float]  # the unedited model's metrics ({} when they could not be measured)
    edit_row: dict[str, Any]  # the ``edits`` row (its ``status`` says ok or error)
    post: dict[str, float] = field(default_factory=dict)
    ppl_row: dict[str, Any] | None = None

    @classmethod
    def ok(
        cls,
        case: EditCase,
        pre: dict[str, float],
        edit_row: dict[str, Any],
        post: dict[str, float],
        ppl_row: dict[str, Any],
    ) -> CaseOutcome:
        """An edit made and measured: post-edit metrics and a ``ppl`` row."""
        return cls(case, pre, edit_row, post, ppl_row)

    @classmethod
    def failed(cls, case: EditCase, pre: dict[str, float], edit_row: dict[str, Any]) -> CaseOutcome:
        """An edit that failed (or whose measurement failed): its ``edits`` row says why; no post-edit
        metrics, no ``ppl`` row."""
        return cls(case, pre, edit_row)


class Clock:
    """Wall and process-CPU time since the last lap."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        lap = {f"{name}_seconds": wall - self._wall, f"{name}_cpu_seconds": cpu - self._cpu}
        self._wall, self._cpu = wall, cpu
        return lap


def ppl_row(spec: SweepConfig, result: PerplexityResult) -> dict[str, Any]:
    """The ``ppl`` row of one edited model's perplexity on the sweep's corpus."""
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


def _delta_norms(delta: Delta) -> tuple[float, float]:
    """(‖ΔW‖_F over all parameters, largest spectral norm); a non-finite ΔW (an overflowing
    update) has no SVD: its Frobenius norm is kept (inf/NaN) and its spectral norm is NaN."""
    try:
        norms = delta.norms().values()
    except RuntimeError:
        squares = [float(change.materialize().double().norm()) ** 2 for change in delta.params.values()]
        return math.sqrt(math.fsum(squares)), math.nan
    return (math.sqrt(math.fsum(n["fro"] ** 2 for n in norms)), max((n["spectral"] for n in norms), default=math.nan))


def delta_columns(delta: Delta) -> dict[str, Any]:
    """The ``edits`` columns describing a weight change: its norms, parameters and diagnostics."""
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


def error_row(error: BaseException) -> dict[str, Any]:
    """The ``edits`` columns of a failed case: status ``error``, the exception's type and message."""
    return {
        "status": "error",
        "error_type": type(error).__name__,
        "error": "".join(traceback.format_exception_only(error)).strip()[:ERROR_CHARS],
    }
