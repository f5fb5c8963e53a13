"""The whole analysis in one call, no Prefect: :func:`run_analysis` reads the warehouse and writes,
into ``AnalysisConfig.output`` (default ``<warehouse local folder>/analysis``):

* ``single-edit-ppl.csv`` / ``.png``: per (model, method, sweep run) the distribution of the
  single-edit ME-PPL — cases, collapsed (> threshold or NaN/inf), quantiles — and a histogram of
  log10 perplexity per model and method with the threshold drawn (from ``ppl``);
* ``hard-cases.csv``: HardCF selections (cases per selection, per source model) and HardEdit
  filter results (candidates kept per reference model) (from ``hardcf``, ``hardedit``);
* ``sequential.csv`` and ``sequential-<run>-perplexity.png`` / ``-weight-change.png``: per
  sequential run and group the trajectories, how many collapsed and at which edit, with the
  curves of :mod:`editcollapse.stages.sequential.plots` (from ``sequential``);
* ``downstream-correlation.csv`` and ``downstream-<run>.png``: per downstream run and task metric
  Pearson (log10 ppl) and Spearman correlations of perplexity with the score, and the scatter plot
  of :mod:`editcollapse.stages.downstream.correlation` (from ``downstream``);
* ``report.md``: all tables as markdown with the figures linked;
* ``report.html``: the same sections as one self-contained page (figures embedded, tables
  sortable; :mod:`editcollapse.stages.analysis.page`).

A stage with no rows yet is reported as such (and gets no CSV), never an error: the analysis runs
at any point.
``editcollapse.orchestration.flows.analysis`` runs each section as a Prefect task with artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editcollapse.stages.analysis import plots, tables
from editcollapse.stages.analysis.config import AnalysisConfig
from editcollapse.stages.analysis.page import write_html
from editcollapse.stages.analysis.report import Report, Section, write_markdown, write_tables
from editcollapse.stages.result import StageResult, bulky
from editcollapse.warehouse.catalog import connect
from editcollapse.warehouse.store import Warehouse


@dataclass(frozen=True)
class AnalysisResult(StageResult):
    """The written analysis: its folder, reports, CSVs and figures, and every table."""

    output: str
    report: str  # report.md
    html: str  # report.html, the one to open
    files: dict[str, str]  # section → its CSV (sections with rows only)
    figures: dict[str, list[str]]  # section → its PNGs
    tables: dict[str, list[dict[str, Any]]] = bulky()  # section → its rows

    def headline(self) -> str:
        return f"{sum(len(rows) for rows in self.tables.values())} table rows → {self.html}"


def run_analysis(config: AnalysisConfig, warehouse: Warehouse) -> AnalysisResult:
    """Write every figure and table of ``config.sections`` (see the module doc)."""
    out = config.output_dir(warehouse)
    out.mkdir(parents=True, exist_ok=True)
    session = connect(warehouse)
    threshold = config.threshold
    found: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, list[str]] = {}
    if "single_edit" in config.sections:
        found["single_edit"] = tables.single_edit_table(session, threshold)
        figure = plots.plot_single_edit(tables.single_edit_values(session), out / "single-edit-ppl.png", threshold)
        figures["single_edit"] = [str(figure)] if figure else []
    if "hard_cases" in config.sections:
        found["hard_cases"] = tables.hard_cases_table(session)
        figures["hard_cases"] = []
    if "sequential" in config.sections:
        runs = tables.rows_by_run(session, "sequential", '"group", trial, step')
        found["sequential"] = tables.sequential_table(runs)
        limits = {key: tables.run_threshold(session, *key, default=threshold) for key in runs}
        figures["sequential"] = [str(path) for path in plots.plot_sequential(runs, out, limits)]
    if "downstream" in config.sections:
        runs = tables.rows_by_run(session, "downstream", "task, metric, edit_ref")
        found["downstream"] = tables.downstream_table(runs)
        figures["downstream"] = [str(path) for path in plots.plot_downstream(runs, out, threshold)]
    files = write_tables(found, out)
    markdown, html = write_reports(found, figures, files, out, warehouse.location, threshold)
    return AnalysisResult(
        output=str(out), report=str(markdown), html=str(html), files=files, figures=figures, tables=found
    )


def write_reports(
    tables: dict[str, list[dict[str, Any]]],
    figures: dict[str, list[str]],
    files: dict[str, str],
    out: Path,
    warehouse: str,
    threshold: float,
) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` in ``out``: the sections in the order of ``tables``, each
    with its rows, CSV (``files``) and figures."""
    sections = [
        Section(name, rows, Path(files[name]) if name in files else None, [Path(f) for f in figures.get(name, [])])
        for name, rows in tables.items()
    ]
    report = Report(warehouse=warehouse, threshold=threshold, sections=sections)
    return write_markdown(report, out), write_html(report, out)
