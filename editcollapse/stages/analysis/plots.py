"""The analysis figures (PNG, matplotlib's Agg backend only, so this works headless).

The single-edit histograms are drawn here; the sequential curves and the downstream scatter plot
are those of :mod:`editcollapse.stages.sequential.plots` and
:mod:`editcollapse.stages.downstream.correlation`, one figure set per run.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from editcollapse.stages.analysis.tables import RunRows
from editcollapse.stages.downstream.correlation import scatter_plot, spans_decades
from editcollapse.stages.sequential.plots import plot_norms, plot_perplexity


def slug(text: str) -> str:
    """A run id as a file-name part: lower case, dashes, at most 80 characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "run"


def single_edit_figure(groups: dict[tuple[str, str], list[float | None]], threshold: float) -> Any:
    """Histograms of single-edit ME-PPL, one panel per (model, method) on a shared log x axis with
    log-spaced bins (so no group hides another and the decades read as perplexities), the
    threshold drawn; counts on a log axis where they span a decade. NaN/inf cannot be drawn and
    are counted in each panel's title. None when there is nothing to draw."""
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy
    from matplotlib.ticker import MaxNLocator

    drawable = {
        key: [v for v in values if v is not None and math.isfinite(v) and v > 0]
        for key, values in sorted(groups.items())
    }
    every = [v for values in drawable.values() for v in values] + [threshold]
    bins = numpy.geomspace(min(every) / 1.5, max(every) * 1.5, 41)
    figure, axes = plt.subplots(
        len(drawable), 1, sharex=True, squeeze=False, figsize=(7.5, 1.3 + 1.6 * len(drawable)), dpi=110
    )
    for index, (axis, ((model, method), values)) in enumerate(zip(axes[:, 0], drawable.items())):
        counts, _, _ = axis.hist(values, bins=bins, color=f"C{index}", alpha=0.75)
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1)
        hidden = len(groups[(model, method)]) - len(values)
        collapsed = hidden + sum(v > threshold for v in values)
        axis.set_title(
            f"{model} · {method}: {len(groups[(model, method)])} edit(s), {collapsed} collapsed"
            + (f" ({hidden} NaN/inf or missing, not drawn)" if hidden else ""),
            fontsize=9,
            loc="left",
        )
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        if spans_decades([c for c in counts if c > 0]):
            axis.set_yscale("log")
            axis.set_ylim(bottom=0.5)  # a bin of one edit stays visible on the log axis
        axis.set_ylabel("edits (log)" if axis.get_yscale() == "log" else "edits")
        axis.grid(True, alpha=0.3)
    axes[0, 0].set_xscale("log")  # shared: every panel
    axes[-1, 0].set_xlabel("ME-PPL after one edit (log)")
    figure.suptitle(f"Single-edit perplexity per model and method (dashed: collapse threshold {threshold:g})")
    figure.tight_layout()
    return figure


def plot_single_edit(groups: dict[tuple[str, str], list[float | None]], path: Path, threshold: float) -> Path | None:
    """:func:`single_edit_figure` as a PNG at ``path``; None when there is nothing to draw."""
    figure = single_edit_figure(groups, threshold)
    if figure is None:
        return None
    import matplotlib.pyplot as plt

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
