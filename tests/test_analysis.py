"""The analysis stage on a warehouse filled by hand: every table's numbers, figures, CSVs, report."""

from __future__ import annotations

import csv
import math

import pytest

from editcollapse.stages.analysis.config import SECTIONS, AnalysisConfig
from editcollapse.stages.analysis.run import run_analysis
from editcollapse.warehouse import Warehouse


def _fill(store: Warehouse) -> None:
    ppl = [12.0, 30.0, 2000.0, float("inf")]
    store.write_part(
        "ppl",
        [
            {
                "run_id": "s1",
                "case_id": f"c{i}",
                "ppl_mean": v,
                "corpus": "test",
                "collapsed": not math.isfinite(v) or v > 1000,
            }
            for i, v in enumerate(ppl)
        ],
        model="m1",
        method="rome",
        run_id="s1",
        shard=0,
    )
    store.write_part(
        "ppl",
        [{"run_id": "s2", "case_id": "c0", "ppl_mean": 50.0, "collapsed": False}],
        model="m2",
        method="memit",
        run_id="s2",
        shard=0,
    )
    store.write_part(
        "runs",
        [{"run_id": "s1", "dataset": "geofacts", "baseline_ppl_mean": 10.0, "threshold": 1000.0}],
        model="m1",
        method="rome",
        run_id="s1",
        shard="run",
    )
    store.write_part(
        "hardcf",
        [{"run_id": "h", "case_id": c, "source_model": "m1", "collapsed": True} for c in ("c2", "c3")],
        model="all-models",
        method="rome",
        run_id="h",
        shard="all",
    )
    store.write_part(
        "hardedit",
        [
            {"run_id": "f", "candidate_id": f"e{i}", "reference_model": "m1", "kept": k}
            for i, k in enumerate([True, False, False])
        ],
        model="m1",
        method="rome",
        run_id="f",
        shard="all",
    )
    steps = []
    for group, values in (("hard", [10.0, 500.0, 5000.0]), ("normal", [10.0, 11.0, 12.0])):
        for step, value in enumerate(values):
            steps.append(
                {
                    "run_id": "q",
                    "group": group,
                    "trial": 0,
                    "step": step,
                    "ppl_mean": value,
                    "collapsed": value > 1000,
                    "cumulative_fro": float(step),
                }
            )
    store.write_part("sequential", steps, model="m1", method="rome", run_id="q", shard="all")
    points = [("baseline", 10.0, 0.60), ("c0", 12.0, 0.58), ("c2", 2000.0, 0.20), ("c3", 9000.0, 0.05)]
    store.write_part(
        "downstream",
        [
            {
                "run_id": "d",
                "edit_ref": ref,
                "task": "lastword",
                "metric": "acc",
                "value": score,
                "ppl_mean": p,
                "n": 10,
            }
            for ref, p, score in points
        ],
        model="m1",
        method="rome",
        run_id="d",
        shard="all",
    )


@pytest.mark.parametrize("root", ["dir", "memory"])
def test_analysis_tables_figures_and_report(tmp_path, root) -> None:
    store = Warehouse(tmp_path / "wh" if root == "dir" else f"memory://analysis-{tmp_path.name}")
    _fill(store)
    result = run_analysis(AnalysisConfig(output=str(tmp_path / "out")), store)
    single = {row["model"]: row for row in result.tables["single_edit"]}
    assert single["m1"]["cases"] == 4 and single["m1"]["collapsed"] == 2 and single["m1"]["nonfinite"] == 1
    assert single["m1"]["collapsed_pct"] == 50.0 and single["m1"]["median"] == 30.0
    assert single["m1"]["unedited_ppl"] == 10.0 and single["m1"]["dataset"] == "geofacts"
    assert single["m2"]["cases"] == 1 and single["m2"]["collapsed"] == 0
    hard = {(row["stage"], row["model"]): (row["cases"], row["kept"]) for row in result.tables["hard_cases"]}
    assert hard == {("hardcf", "m1"): (2, 2), ("hardedit", "m1"): (3, 1)}
    sequential = {row["group"]: row for row in result.tables["sequential"]}
    assert sequential["hard"]["collapsed"] == 1 and sequential["hard"]["first_collapse_step"] == 2
    assert sequential["normal"]["collapsed"] == 0 and sequential["normal"]["median_final_ppl"] == 12.0
    (correlation,) = result.tables["downstream"]
    assert correlation["n"] == 4 and correlation["pearson_r_log10ppl"] < -0.9 and correlation["spearman_rho"] == -1.0
    figures = [f for section in SECTIONS for f in result.figures[section]]
    assert len(figures) == 4  # single-edit histogram, two sequential curves, one downstream scatter
    for figure in figures:
        with open(figure, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(result.files["single_edit"]) as handle:
        assert len(list(csv.DictReader(handle))) == 2
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Sequential editing" in report and "(single-edit-ppl.png)" in report
    assert result.report == str(tmp_path / "out" / "report.md")
    assert result.headline() == f"{2 + 2 + 2 + 1} table rows → {result.report}"


def test_analysis_of_an_empty_warehouse_says_so(tmp_path) -> None:
    result = run_analysis(AnalysisConfig(output=str(tmp_path / "out")), Warehouse(tmp_path / "empty"))
    assert all(rows == [] for rows in result.tables.values())
    assert "_no rows yet_" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(ValueError, match="unknown analysis section"):
        AnalysisConfig(sections=("nope",))


def test_analyse_command(tmp_path) -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app

    _fill(Warehouse(tmp_path / "wh"))
    result = CliRunner().invoke(
        app, ["analyse", "-w", str(tmp_path / "wh"), "-o", str(tmp_path / "out"), "--no-prefect"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "single_edit: 2 row(s), 1 figure(s)" in result.output and "sequential: 2 row(s), 2 figure(s)" in result.output
    )
    assert (tmp_path / "out" / "downstream-correlation.csv").is_file()
