"""The analysis stage on a warehouse filled by hand: every table's numbers, figures, CSVs, report."""

from __future__ import annotations

import csv

import pytest

from editcollapse.stages.analysis.config import SECTIONS, AnalysisConfig
from editcollapse.stages.analysis.report import NO_DATA
from editcollapse.stages.analysis.run import run_analysis
from editcollapse.warehouse import Warehouse
from tests.analysis_warehouse import fill


@pytest.mark.parametrize("root", ["dir", "memory"])
def test_analysis_tables_figures_and_report(tmp_path, root) -> None:
    store = Warehouse(tmp_path / "wh" if root == "dir" else f"memory://analysis-{tmp_path.name}")
    fill(store)
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
    assert set(result.files) == set(SECTIONS)
    counts = {}
    for section, path in result.files.items():
        with open(path) as handle:
            counts[section] = len(list(csv.DictReader(handle)))
    assert counts == {section: len(rows) for section, rows in result.tables.items()} and counts["single_edit"] == 2
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Sequential editing" in report and "(single-edit-ppl.png)" in report
    assert result.report == str(tmp_path / "out" / "report.md")
    assert result.html == str(tmp_path / "out" / "report.html")
    assert result.headline() == f"{2 + 2 + 2 + 1} table rows → {result.html}"


def test_analysis_of_an_empty_warehouse_says_so_and_writes_no_csv(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "sequential.csv").write_text("model,run\nold,stale\n")  # an earlier analysis's table
    result = run_analysis(AnalysisConfig(output=str(out)), Warehouse(tmp_path / "empty"))
    assert all(rows == [] for rows in result.tables.values())
    assert result.files == {} and sorted(p.name for p in out.iterdir()) == ["report.html", "report.md"]
    markdown, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert markdown.count(NO_DATA) == len(SECTIONS) and html.count(NO_DATA) == len(SECTIONS)
    with pytest.raises(ValueError, match="unknown analysis section"):
        AnalysisConfig(sections=("nope",))


def test_an_empty_section_beside_full_ones_gets_no_csv(tmp_path) -> None:
    only_sequential = Warehouse(tmp_path / "seq")
    only_sequential.write_part(
        "sequential",
        [{"run_id": "q", "group": "hard", "trial": 0, "step": 0, "ppl_mean": 10.0, "collapsed": False}],
        model="m1",
        method="rome",
        run_id="q",
        shard="all",
    )
    result = run_analysis(AnalysisConfig(output=str(tmp_path / "seq-out")), only_sequential)
    assert list(result.files) == ["sequential"]
    assert sorted(p.name for p in (tmp_path / "seq-out").glob("*.csv")) == ["sequential.csv"]
    sections = (tmp_path / "seq-out" / "report.md").read_text().split("\n## ")[1:]
    assert [NO_DATA in text for text in sections] == [True, True, False, True]


def test_analyse_command(tmp_path) -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app

    fill(Warehouse(tmp_path / "wh"))
    result = CliRunner().invoke(
        app, ["analyse", "-w", str(tmp_path / "wh"), "-o", str(tmp_path / "out"), "--no-prefect"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "single_edit: 2 row(s), 1 figure(s)" in result.output and "sequential: 2 row(s), 2 figure(s)" in result.output
    )
    assert (tmp_path / "out" / "downstream-correlation.csv").is_file()
    html = tmp_path / "out" / "report.html"
    assert f"report: {html} (markdown: {tmp_path / 'out' / 'report.md'})" in result.output and html.is_file()
