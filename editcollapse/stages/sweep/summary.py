"""A sweep run's result (:class:`SweepResult`) and its log-perplexity histogram, read back from
the warehouse.

Read from the stored rows (not from what this process computed), so a resumed run's result
covers the shards of earlier attempts too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from editcollapse.core.collapse import is_collapsed
from editcollapse.stages.result import StageResult, bulky
from editcollapse.warehouse.catalog import connect
from editcollapse.warehouse.layout import partition_value
from editcollapse.warehouse.store import Warehouse

HISTOGRAM_WIDTH = 40


def _where(model: str, method: str, run_id: str) -> tuple[str, list[str]]:
    return "model = ? AND method = ? AND run = ?", [partition_value(v) for v in (model, method, run_id)]


@dataclass(frozen=True)
class SweepResult(StageResult):
    """A sweep run: its counts, perplexity quantiles, unedited perplexity and most damaging edits."""

    run_id: str
    model: str
    method: str
    status: str  # the runs row's status: completed, completed_with_errors, running (other workers hold shards), failed
    n_cases: int  # valid cases (the loader's rejected records are ``n_invalid``)
    n_errors: int
    n_invalid: int
    n_measured: int  # cases with a perplexity
    n_collapsed: int  # ppl_mean > threshold, or not finite
    n_nonfinite: int
    threshold: float | None  # None while no case is measured
    ppl_median: float | None  # quantiles of the finite ppl_mean values (None when there is none)
    ppl_p90: float | None
    ppl_max: float | None
    baseline_ppl_mean: float | None  # the unedited model's
    most_damaging: tuple[dict[str, Any], ...]  # case_id, ppl_mean, subject, target_new, prompt; worst first
    ppl_means: tuple[float, ...] = bulky()  # every measured case's ppl_mean

    def headline(self) -> str:
        median = "—" if self.ppl_median is None else f"{self.ppl_median:.4g}"
        return f"{self.n_cases} cases, {self.n_collapsed} collapsed, {self.n_errors} errors; median ppl {median}"


def run_summary(
    warehouse: Warehouse,
    model: str,
    method: str,
    run_id: str,
    *,
    status: str,
    baseline_ppl_mean: float | None,
    top: int = 5,
) -> SweepResult:
    """Counts, perplexity quantiles and the ``top`` most damaging edits of one sweep run, with the
    run's ``status`` and unedited perplexity (which the caller holds: they are in its runs row)."""
    where, args = _where(model, method, run_id)
    session = connect(warehouse)
    n_cases, n_errors, n_invalid = session.execute(
        f"SELECT count(*) FILTER (WHERE status <> 'invalid'), count(*) FILTER (WHERE status = 'error'), "
        f"count(*) FILTER (WHERE status = 'invalid') FROM edits WHERE {where}",
        args,
    ).fetchone()
    ppl = [row[0] for row in session.execute(f"SELECT ppl_mean FROM ppl WHERE {where}", args).fetchall()]
    worst = session.execute(
        f"SELECT p.case_id, p.ppl_mean, c.subject, c.target_new, c.prompt FROM ppl p JOIN cases c "
        f"USING (run_id, case_id) WHERE p.{where.replace(' AND ', ' AND p.')} "
        f"ORDER BY isfinite(p.ppl_mean), p.ppl_mean DESC LIMIT {int(top)}",
        args,
    ).fetchall()
    threshold = session.execute(f"SELECT max(threshold) FROM ppl WHERE {where}", args).fetchone()[0]
    finite = sorted(v for v in ppl if math.isfinite(v))
    return SweepResult(
        run_id=run_id,
        model=model,
        method=method,
        status=status,
        n_cases=n_cases,
        n_errors=n_errors,
        n_invalid=n_invalid,
        n_measured=len(ppl),
        n_collapsed=sum(is_collapsed(v, threshold) for v in ppl) if ppl else 0,
        n_nonfinite=len(ppl) - len(finite),
        threshold=threshold,
        ppl_median=quantile(finite, 0.5),
        ppl_p90=quantile(finite, 0.9),
        ppl_max=finite[-1] if finite else None,
        baseline_ppl_mean=baseline_ppl_mean,
        most_damaging=tuple(
            dict(zip(("case_id", "ppl_mean", "subject", "target_new", "prompt"), row)) for row in worst
        ),
        ppl_means=tuple(ppl),
    )


def quantile(ordered: list[float], q: float) -> float | None:
    """Linear-interpolated quantile of an already sorted list (None when empty)."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def log_ppl_histogram(values: Sequence[float], threshold: float, bins_per_decade: int = 2) -> str:
    """A markdown histogram of log10(ME-PPL) with the collapse threshold marked; NaN/inf (counted
    as collapsed) get their own row."""
    finite = [v for v in values if math.isfinite(v) and v > 0]
    counts: dict[int, int] = {}
    if finite:
        low = math.floor(math.log10(min(finite)) * bins_per_decade)
        high = math.floor(math.log10(max(finite)) * bins_per_decade)
        counts = {b: 0 for b in range(low, high + 1)}
        for value in finite:
            counts[math.floor(math.log10(value) * bins_per_decade)] += 1
    nonfinite = len(values) - len(finite)
    peak = max([*counts.values(), nonfinite, 1])
    lines = ["| log10 ME-PPL | ME-PPL range | cases | |", "|---|---|---:|---|"]
    for b, count in counts.items():
        start, end = 10 ** (b / bins_per_decade), 10 ** ((b + 1) / bins_per_decade)
        mark = " ⟵ threshold" if start <= threshold < end else ""
        lines.append(
            f"| {b / bins_per_decade:.1f}–{(b + 1) / bins_per_decade:.1f} | {start:,.0f}–{end:,.0f}"
            f"{mark} | {count} | {'█' * round(HISTOGRAM_WIDTH * count / peak)} |"
        )
    if nonfinite:
        lines.append(
            f"| NaN/inf | not finite (collapsed) | {nonfinite} | {'█' * round(HISTOGRAM_WIDTH * nonfinite / peak)} |"
        )
    return "\n".join(lines)
