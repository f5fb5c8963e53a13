"""Figures of a sequential run: perplexity and weight-change norm against the number of edits.

One line per trajectory, hard in red and normal in blue (as the paper's Figure 5 contrasts them),
each trial of a group in its own line style (labelled while a group has few trials, so a reader can
follow one ordering); perplexity on a log scale with the collapse threshold drawn; a trajectory that
collapsed ends with a cross. Matplotlib's Agg backend only, so this works headless.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

COLORS = {"hard": "tab:red", "normal": "tab:blue"}
LINESTYLES = ("-", "--", ":", "-.")


def _trajectories(rows: Iterable[dict[str, Any]], value: str) -> dict[tuple[str, int], list[tuple[int, float]]]:
    lines: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for row in rows:
        if row.get(value) is None:
            continue
        lines.setdefault((row["group"], row["trial"]), []).append((row["step"], row[value]))
    return {key: sorted(points) for key, points in sorted(lines.items())}


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(7, 4.5), dpi=110)


def legend_labels(keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str | None]:
    """Each trajectory's legend label: "hard, trial 1" while its group has at most as many trials
    as there are line styles, else the group name on its first line only (None = no entry)."""
    keys = sorted(keys)
    trials = Counter(group for group, _ in keys)
    labels: dict[tuple[str, int], str | None] = {}
    seen: set[str] = set()
    for group, trial in keys:
        if trials[group] <= len(LINESTYLES):
            labels[(group, trial)] = f"{group}, trial {trial}" if trials[group] > 1 else group
        else:
            labels[(group, trial)] = None if group in seen else group
        seen.add(group)
    return labels


def _draw(
    rows: list[dict[str, Any]], value: str, ylabel: str, title: str, path: Path, threshold: float | None = None
) -> Path:
    from matplotlib.ticker import MaxNLocator

    plt, figure, axes = _figure()
    collapsed = {(r["group"], r["trial"]) for r in rows if r.get("collapsed")}
    lines = _trajectories(rows, value)
    labels = legend_labels(lines)
    for (group, trial), points in lines.items():
        steps = [s for s, _ in points]
        # a non-finite perplexity is collapse: draw it at the top of the axis instead of dropping it
        values = [v if math.isfinite(v) else math.nan for _, v in points]
        color = COLORS.get(group, "tab:gray")
        axes.plot(
            steps,
            values,
            marker=".",
            color=color,
            alpha=0.8,
            label=labels[(group, trial)],
            linestyle=LINESTYLES[trial % len(LINESTYLES)],
        )
        if (group, trial) in collapsed and threshold is not None:
            axes.plot(
                steps[-1],
                values[-1] if math.isfinite(values[-1]) else threshold,
                marker="x",
                color=color,
                markersize=10,
            )
    axes.set_yscale("log")
    if threshold is not None:
        axes.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"collapse ({threshold:g})")
    axes.set_xlabel("number of edits")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if axes.get_legend_handles_labels()[0]:  # a figure of rows without this value has nothing to name
        axes.legend(fontsize="small")
    axes.grid(True, which="major", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_perplexity(
    rows: list[dict[str, Any]], path: str | Path, *, threshold: float, title: str, value: str = "ppl_mean"
) -> Path:
    """Perplexity (mean per sentence; ``extra_ppl_mean``: the second corpus) vs edits, hard vs normal,
    log scale, threshold line."""
    return _draw(rows, value, "perplexity (log)", title, Path(path), threshold=threshold)


def plot_norms(rows: list[dict[str, Any]], path: str | Path, *, title: str, value: str = "cumulative_fro") -> Path:
    """A weight-change norm (default: Frobenius norm of the cumulative change) vs edits."""
    labels = {
        "cumulative_fro": "‖ΣΔW‖_F (cumulative)",
        "cumulative_spectral": "‖ΣΔW‖₂ (cumulative)",
        "delta_fro": "‖ΔW‖_F (this edit)",
        "delta_spectral": "‖ΔW‖₂ (this edit)",
    }
    return _draw(rows, value, labels.get(value, value), title, Path(path))
