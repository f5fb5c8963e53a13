"""The whole analysis in one call, no Prefect: :func:`run_analysis` reads the warehouse and writes,
into ``output`` (default ``<warehouse local folder>/analysis``):

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
* ``report.md``: all tables as markdown with the figures linked.

A stage with no rows yet is reported as such, never an error: the analysis runs at any point.
``editcollapse.orchestration.flows.analysis`` runs each section as a Prefect task with artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from editcollapse.core.collapse import COLLAPSE_THRESHOLD
from editcollapse.stages.analysis import plots, tables
from editcollapse.stages.analysis.report import write_report, write_tables
from editcollapse.warehouse.catalog import connect
from editcollapse.warehouse.store import Warehouse

SECTIONS = ("single_edit", "hard_cases", "sequential", "downstream")


def check_sections(sections: Sequence[str]) -> None:
    """Raise ValueError naming any section that is not one of :data:`SECTIONS`."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown analysis section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")


def output_dir(store: Warehouse, output: str | Path | None) -> Path:
    """``output``, or the warehouse's local ``analysis`` folder."""
    return Path(output) if output is not None else store.local_dir / "analysis"


def run_analysis(
    warehouse: str | Warehouse | None = None,
    output: str | Path | None = None,
    *,
    threshold: float = COLLAPSE_THRESHOLD,
    sections: Sequence[str] = SECTIONS,
) -> dict[str, Any]:
    """Write every figure and table of the study (see the module doc); return their paths and the
    tables. ``sections`` picks a subset of :data:`SECTIONS`."""
    check_sections(sections)
    store = Warehouse(warehouse)
    out = output_dir(store, output)
    out.mkdir(parents=True, exist_ok=True)
    session = connect(store)
    found: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, list[str]] = {}
    if "single_edit" in sections:
        found["single_edit"] = tables.single_edit_table(session, threshold)
        figure = plots.plot_single_edit(tables.single_edit_values(session), out / "single-edit-ppl.png", threshold)
        figures["single_edit"] = [str(figure)] if figure else []
    if "hard_cases" in sections:
        found["hard_cases"] = tables.hard_cases_table(session)
        figures["hard_cases"] = []
    if "sequential" in sections:
        runs = tables.rows_by_run(session, "sequential", '"group", trial, step')
        found["sequential"] = tables.sequential_table(runs)
        limits = {key: tables.run_threshold(session, *key, default=threshold) for key in runs}
        figures["sequential"] = [str(path) for path in plots.plot_sequential(runs, out, limits)]
    if "downstream" in sections:
        runs = tables.rows_by_run(session, "downstream", "task, metric, edit_ref")
        found["downstream"] = tables.downstream_table(runs)
        figures["downstream"] = [str(path) for path in plots.plot_downstream(runs, out, threshold)]
    files = write_tables(found, out)
    report = write_report(found, figures, out, store.location)
    return {"output": str(out), "report": str(report), "tables": found, "files": files, "figures": figures}
