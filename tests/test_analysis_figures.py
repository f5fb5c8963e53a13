"""The analysis figures don't mislead: log axes where perplexity spans decades, no group's histogram
hidden behind another's, no error bar past the range its statistic can take."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest

from editcollapse.stages.analysis.plots import single_edit_figure
from editcollapse.stages.downstream.correlation import error_bar, scatter_figure


def test_single_edit_histograms_one_panel_per_group_on_a_log_perplexity_axis() -> None:
    groups = {
        ("m1", "rome"): [12.0, 14.0, 30.0, 2000.0, math.inf, None],
        ("m1", "memit"): [12.0, 14.0, 30.0],  # the same values: in one axes it would hide behind rome
        ("m2", "rome"): [11.0] * 150 + [9000.0],  # counts spanning decades
    }
    figure = single_edit_figure(groups, threshold=1000.0)
    try:
        axes = figure.axes
        assert len(axes) == len(groups)  # side by side: no histogram drawn over another
        assert all(axis.get_xscale() == "log" for axis in axes)
        (memit, rome, m2) = axes  # sorted by (model, method)
        title = rome.get_title(loc="left")
        assert "6 edit(s), 3 collapsed (2 NaN/inf or missing, not drawn)" in title
        assert sum(patch.get_height() for patch in rome.patches) == 4  # the drawable values, all there
        assert sum(patch.get_height() for patch in memit.patches) == 3
        assert m2.get_yscale() == "log" and rome.get_yscale() == "linear"
        low, high = rome.get_xlim()
        assert low < 12.0 and high > 2000.0  # every value and the threshold inside the axis
        edges = sorted({round(math.log10(patch.get_x()), 9) for patch in m2.patches})
        widths = {round(b - a, 6) for a, b in zip(edges, edges[1:])}
        assert len(widths) == 1  # bins equally wide on the log axis
    finally:
        plt.close(figure)
    assert single_edit_figure({}, threshold=1000.0) is None


@pytest.mark.parametrize("value", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_proportion_error_bars_stay_in_zero_to_one(value) -> None:
    below, above = error_bar("acc", value, stderr=math.sqrt(value * (1 - value) / 9), n=10)
    assert below >= 0 and above >= 0 and value - below >= 0 and value + above <= 1
    if 0 < value < 1:
        assert below > 0 and above > 0
    below, above = error_bar("acc_norm,none", value, stderr=0.3, n=None)  # no n: clipped
    assert value - below >= 0 and value + above <= 1


def test_perplexity_error_bars_are_log_normal_and_positive() -> None:
    below, above = error_bar("perplexity", 20.0, stderr=30.0, n=100)
    assert 0 < 20.0 - below < 20.0 and above > below  # never below zero, longer upwards
    assert (20.0 + above) / 20.0 == pytest.approx(20.0 / (20.0 - below))  # symmetric on the log axis
    assert error_bar("perplexity", 20.0, stderr=math.nan, n=100) is None
    # a collapsed model (seen on a tiny model: 4.7e13 with a far larger stderr): no bar, no overflow
    assert error_bar("perplexity", 4.663e13, stderr=1e20, n=100) is None
    assert error_bar("perplexity", 1e300, stderr=1e302, n=100) is None  # exp fits, the product does not
    assert error_bar("bleu", 5.0, stderr=1.0, n=10) == (1.0, 1.0)  # a metric we know nothing of: as reported


def _rows(metric: str, scores: list[float], stderr: list[float]) -> list[dict]:
    ppl = [10.0, 30.0, 2000.0, 9000.0]
    return [
        {"task": "lw", "metric": metric, "value": s, "stderr": e, "n": 10, "ppl_mean": p, "edit_ref": f"c{i}"}
        for i, (p, s, e) in enumerate(zip(ppl, scores, stderr))
    ]


def test_downstream_scatter_bars_never_cross_zero_and_perplexity_gets_a_log_axis() -> None:
    rows = _rows("acc", [0.6, 0.5, 0.1, 0.0], [0.16, 0.17, 0.1, 0.0]) + _rows(
        "perplexity",
        [20.0, 40.0, 900.0, 5000.0],
        [8.0, 30.0, 1200.0, 6000.0],  # wider than the value: a bar crossed 0
    )
    rows.append({**rows[0], "ppl_mean": math.inf, "value": 0.0, "edit_ref": "c9"})  # collapsed past infinity
    figure = scatter_figure(rows)
    try:
        by_metric = {axis.get_ylabel(): axis for axis in figure.axes}
        assert set(by_metric) == {"acc", "perplexity (log)"}
        assert by_metric["acc"].get_yscale() == "linear" and by_metric["perplexity (log)"].get_yscale() == "log"
        assert by_metric["acc"].get_title().endswith("n=4, 1 NaN/inf not drawn")
        for name, axis in by_metric.items():
            assert axis.get_xscale() == "log"
            bars = [y for collection in axis.collections for segment in collection.get_segments() for _, y in segment]
            assert len(bars) == 2 * 4  # every point has its bar
            assert min(bars) > 0 if name.startswith("perplexity") else min(bars) >= 0
            if name == "acc":
                assert max(bars) <= 1
    finally:
        plt.close(figure)
    narrow = scatter_figure(_rows("perplexity", [20.0, 21.0, 25.0, 30.0], [1.0] * 4))
    try:
        assert narrow.axes[0].get_yscale() == "linear"  # less than a decade: a plain axis
    finally:
        plt.close(narrow)
