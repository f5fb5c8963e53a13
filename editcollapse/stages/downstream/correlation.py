"""Does perplexity track downstream performance? Correlations across models and the Figure 3 plot.

Each evaluated model (the unedited baseline and every edited one) is a point (ME-PPL perplexity,
task score). Pearson's r is computed on log10(perplexity), because edited models' perplexities
span orders of magnitude (the paper plots them on a log axis) and a raw-scale r would be decided
by the single largest value; Spearman's ρ is rank-based and the same on either scale. Points with
a non-finite perplexity or score are left out and counted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editcollapse.core.collapse import COLLAPSE_THRESHOLD


@dataclass(frozen=True)
class Correlation:
    """Correlation of one task metric with perplexity across ``n`` models (nan when n < 3 or constant)."""

    task: str
    metric: str
    n: int
    n_excluded: int
    pearson_r: float  # on log10(perplexity)
    pearson_p: float
    spearman_rho: float
    spearman_p: float


def correlate(ppl: Sequence[float], scores: Sequence[float]) -> tuple[int, int, float, float, float, float]:
    """(n, n_excluded, Pearson r on log10 ppl, its p, Spearman ρ, its p) of paired values."""
    from scipy import stats

    if len(ppl) != len(scores):
        raise ValueError(f"{len(ppl)} perplexities but {len(scores)} scores")
    pairs = [(p, s) for p, s in zip(ppl, scores) if math.isfinite(p) and p > 0 and math.isfinite(s)]
    n, excluded = len(pairs), len(ppl) - len(pairs)
    xs = [math.log10(p) for p, _ in pairs]
    ys = [s for _, s in pairs]
    if n < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return n, excluded, math.nan, math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pearson = stats.pearsonr(xs, ys)
        spearman = stats.spearmanr(xs, ys)
    return (
        n,
        excluded,
        float(pearson.statistic),
        float(pearson.pvalue),
        float(spearman.statistic),
        float(spearman.pvalue),
    )


def _groups(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["metric"]), []).append(row)
    return groups


def correlations(rows: Iterable[Mapping[str, Any]]) -> list[Correlation]:
    """One :class:`Correlation` per (task, metric) of ``rows`` (``downstream`` table rows:
    task, metric, value, ppl_mean — one row per model and metric)."""
    result = []
    for (task, metric), group in sorted(_groups(rows).items()):
        stats = correlate([_float(r["ppl_mean"]) for r in group], [_float(r["value"]) for r in group])
        result.append(Correlation(task, metric, *stats))
    return result


def scatter_plot(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "",
    baseline_ref: str = "baseline",
    threshold: float = COLLAPSE_THRESHOLD,
) -> Path:
    """Perplexity (log x) vs score, one panel per task metric, baseline starred; a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(rows)
    if not groups:
        raise ValueError("no downstream rows to plot")
    stats = {(c.task, c.metric): c for c in correlations(rows)}
    columns = min(3, len(groups))
    n_rows = math.ceil(len(groups) / columns)
    figure, axes = plt.subplots(n_rows, columns, figsize=(4.2 * columns, 3.4 * n_rows), squeeze=False)
    for axis, ((task, metric), group) in zip(axes.flat, sorted(groups.items())):
        for row in group:
            x, y = _float(row["ppl_mean"]), _float(row["value"])
            if not (math.isfinite(x) and x > 0 and math.isfinite(y)):
                continue
            is_base = row.get("edit_ref") == baseline_ref
            stderr = _float(row.get("stderr"))
            axis.errorbar(
                x,
                y,
                yerr=stderr if math.isfinite(stderr) else None,
                fmt="*" if is_base else "o",
                markersize=12 if is_base else 6,
                color="tab:green" if is_base else "tab:blue",
                alpha=0.8,
                capsize=2,
            )
        axis.axvline(threshold, color="tab:red", linestyle="--", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("ME-PPL perplexity (log)")
        axis.set_ylabel(metric)
        c = stats[(task, metric)]
        axis.set_title(f"{task}\nr={c.pearson_r:.2f} ρ={c.spearman_rho:.2f} n={c.n}", fontsize=9)
    for axis in list(axes.flat)[len(groups) :]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
