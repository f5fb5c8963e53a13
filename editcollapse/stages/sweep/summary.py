"""A sweep run's summary and its log-perplexity histogram, read back from the warehouse.

Read from the stored rows (not from what this process computed), so a resumed run's summary
covers the shards of earlier attempts too.
"""

from __future__ import annotations

import math
from typing import Any

from editcollapse.core.collapse import is_collapsed
from editcollapse.warehouse.catalog import connect
from editcollapse.warehouse.layout import partition_value
from editcollapse.warehouse.store import Warehouse

HISTOGRAM_WIDTH = 40


def _where(model: str, method: str, run_id: str) -> tuple[str, list[str]]:
    return "model = ? AND method = ? AND run = ?", [partition_value(v) for v in (model, method, run_id)]


def run_summary(warehouse: Warehouse, model: str, method: str, run_id: str, top: int = 5) -> dict[str, Any]:
    """Counts, perplexity quantiles and the ``top`` most damaging edits of one sweep run."""
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
    return {
        "run_id": run_id,
        "model": model,
        "method": method,
        "n_cases": n_cases,
        "n_errors": n_errors,
        "n_invalid": n_invalid,
        "n_measured": len(ppl),
        "n_collapsed": sum(is_collapsed(v, threshold) for v in ppl) if ppl else 0,
        "n_nonfinite": len(ppl) - len(finite),
        "threshold": threshold,
        "ppl_median": quantile(finite, 0.5),
        "ppl_p90": quantile(finite, 0.9),
        "ppl_max": finite[-1] if finite else None,
        "most_damaging": [dict(zip(("case_id", "ppl_mean", "subject", "target_new", "prompt"), row)) for row in worst],
        "ppl_means": ppl,
    }


def quantile(ordered: list[float], q: float) -> float | None:
    """Linear-interpolated quantile of an already sorted list (None when empty)."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def log_ppl_histogram(values: list[float], threshold: float, bins_per_decade: int = 2) -> str:
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
