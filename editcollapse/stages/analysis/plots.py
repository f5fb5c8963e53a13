"""The analysis figures (PNG, matplotlib's Agg backend only, so this works headless).

The single-edit histogram is drawn here; the sequential curves and the downstream scatter plot
are those of :mod:`editcollapse.stages.sequential.plots` and
:mod:`editcollapse.stages.downstream.correlation`, one figure set per run.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from editcollapse.stages.analysis.tables import RunRows
from editcollapse.stages.downstream.correlation import scatter_plot
from editcollapse.stages.sequential.plots import plot_norms, plot_perplexity


def slug(text: str) -> str:
    """A run id as a file-name part: lower case, dashes, at most 80 characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "run"


def plot_single_edit(groups: dict[tuple[str, str], list[float | None]], path: Path, threshold: float) -> Path | None:
    """Histogram of log10 single-edit ME-PPL, one outline per (model, method); NaN/inf counted in
    the legend (they cannot be drawn on the axis). None when there is nothing to draw."""
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    logs = [math.log10(v) for values in groups.values() for v in values if v is not None and math.isfinite(v) and v > 0]
    low, high = (min(logs), max(logs)) if logs else (0.0, 1.0)
    high = max(high, math.log10(threshold)) + 0.25
    bins = [low + (high - low) * i / 40 for i in range(41)] if high > low else 20
    for (model, method), values in sorted(groups.items()):
        finite = [math.log10(v) for v in values if v is not None and math.isfinite(v) and v > 0]
        nonfinite = len(values) - len(finite)
        label = f"{model} · {method} (n={len(values)}" + (f", {nonfinite} NaN/inf)" if nonfinite else ")")
        axes.hist(finite, bins=bins, histtype="step", linewidth=1.6, label=label)
    axes.axvline(math.log10(threshold), color="black", linestyle="--", linewidth=1, label=f"collapse ({threshold:g})")
    axes.set_xlabel("log10 ME-PPL after one edit")
    axes.set_ylabel("edits")
    axes.set_yscale("log")
    axes.set_ylim(bottom=0.5)  # a bin of one edit stays visible on the log axis
    axes.set_title("Single-edit perplexity per model and method")
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_sequential(runs: RunRows, out: Path, thresholds: dict[tuple[str, str, str], float]) -> list[Path]:
    """Per sequential run: ``sequential-<run>-perplexity.png`` (with the run's own collapse
    threshold, ``thresholds[(model, method, run)]``) and ``sequential-<run>-weight-change.png``."""
    figures = []
    for (model, method, run), rows in runs.items():
        stem = out / f"sequential-{slug(run)}"
        figures += [
            plot_perplexity(
                rows,
                f"{stem}-perplexity.png",
                threshold=thresholds[(model, method, run)],
                title=f"{method} on {model}: sequential editing, hard vs normal ({run})",
            ),
            plot_norms(
                rows, f"{stem}-weight-change.png", title=f"{method} on {model}: cumulative weight change ({run})"
            ),
        ]
    return figures


def plot_downstream(runs: RunRows, out: Path, threshold: float) -> list[Path]:
    """Per downstream run: ``downstream-<run>.png``, perplexity vs score with the threshold drawn."""
    return [
        scatter_plot(
            rows,
            out / f"downstream-{slug(run)}.png",
            threshold=threshold,
            title=f"{method} edits of {model}: perplexity vs downstream ({run})",
        )
        for (model, method, run), rows in runs.items()
    ]
