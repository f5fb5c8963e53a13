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

PROPORTIONS = {"acc", "acc_norm", "exact_match"}  # metrics that are a share of documents, in [0, 1]


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


def error_bar(metric: str, value: float, stderr: float, n: int | None) -> tuple[float, float] | None:
    """How far a ±1 stderr bar reaches (below, above) ``value``, kept where the statistic can be:
    a proportion (acc, acc_norm, exact_match) gets the Wilson score interval at z = 1 over its
    ``n`` documents (clipped to [0, 1] when ``n`` is unknown), a perplexity (exp of a mean
    log-loss) the log-normal interval value·exp(±stderr/value) (the delta method), any other
    metric the symmetric bar. None when there is no stderr."""
    if not (math.isfinite(stderr) and math.isfinite(value)):
        return None
    name = metric.split(",")[0]
    if name in PROPORTIONS:
        if n:
            centre = (value + 1 / (2 * n)) / (1 + 1 / n)
            half = math.sqrt(value * (1 - value) / n + 1 / (4 * n * n)) / (1 + 1 / n)
            low, high = max(0.0, centre - half), min(1.0, centre + half)
        else:
            low, high = max(0.0, value - stderr), min(1.0, value + stderr)
        return max(0.0, value - low), max(0.0, high - value)
    if "perplexity" in name and value > 0:
        if stderr / value > 700:  # exp overflows: an interval wider than any axis draws no bar
            return None
        spread = math.exp(stderr / value)
        return value - value / spread, value * spread - value
    return stderr, stderr


def spans_decades(values: Sequence[float]) -> bool:
    """Whether positive ``values`` span a factor of ten or more (a log axis shows them better)."""
    return bool(values) and min(values) > 0 and max(values) >= 10 * min(values)


def scatter_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str = "",
    baseline_ref: str = "baseline",
    threshold: float = COLLAPSE_THRESHOLD,
) -> Any:
    """The matplotlib figure of :func:`scatter_plot` (the caller saves and closes it): a
    perplexity-valued metric that spans a decade or more gets a log y axis too."""
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
        scores = []
        for row in group:
            x, y = _float(row["ppl_mean"]), _float(row["value"])
            if not (math.isfinite(x) and x > 0 and math.isfinite(y)):
                continue
            scores.append(y)
            is_base = row.get("edit_ref") == baseline_ref
            bar = error_bar(metric, y, _float(row.get("stderr")), row.get("n"))
            axis.errorbar(
                x,
                y,
                yerr=None if bar is None else [[bar[0]], [bar[1]]],
                fmt="*" if is_base else "o",
                markersize=12 if is_base else 6,
                color="tab:green" if is_base else "tab:blue",
                alpha=0.8,
                capsize=2,
            )
        axis.axvline(threshold, color="tab:red", linestyle="--", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("ME-PPL perplexity (log)")
        if "perplexity" in metric and spans_decades(scores):
            axis.set_yscale("log")
        axis.set_ylabel(f"{metric} (log)" if axis.get_yscale() == "log" else metric)
        c = stats[(task, metric)]
        hidden = f", {c.n_excluded} NaN/inf not drawn" if c.n_excluded else ""  # a collapse must not vanish
        axis.set_title(f"{task}\nr={c.pearson_r:.2f} ρ={c.spearman_rho:.2f} n={c.n}{hidden}", fontsize=9)
    for axis in list(axes.flat)[len(groups) :]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def scatter_plot(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "",
    baseline_ref: str = "baseline",
    threshold: float = COLLAPSE_THRESHOLD,
) -> Path:
    """Perplexity (log x) vs score, one panel per task metric, baseline starred, each score's
    stderr as :func:`error_bar` bounds it; a PNG at ``path``."""
    import matplotlib.pyplot as plt

    figure = scatter_figure(rows, title=title, baseline_ref=baseline_ref, threshold=threshold)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
