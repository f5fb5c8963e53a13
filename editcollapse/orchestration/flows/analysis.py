"""Stage 6 of the study as a Prefect flow: :func:`analyse_study` runs each section of
:func:`editcollapse.stages.analysis.run.run_analysis` as a task run, publishes each section's table
as a table artifact and its figures as a markdown artifact, and writes the merged ``report.md`` and
``report.html``.
The outputs and their file names are those of :mod:`editcollapse.stages.analysis.run`; without
Prefect, call ``run_analysis(config, warehouse)`` directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from editcollapse.orchestration.artifacts import figures_markdown, table_rows
from editcollapse.orchestration.run_context import run_logger
from editcollapse.stages.analysis.config import AnalysisConfig
from editcollapse.stages.analysis.report import TITLES
from editcollapse.stages.analysis.run import AnalysisResult, run_analysis, write_reports
from editcollapse.warehouse.store import Warehouse


@task(name="analysis-section", task_run_name="analyse-{section}", cache_policy=NO_CACHE)
def analyse_section_task(config: AnalysisConfig, warehouse: str, section: str) -> AnalysisResult:
    """One section of the analysis (a task run per section in the UI)."""
    return run_analysis(dataclasses.replace(config, sections=(section,)), Warehouse(warehouse))


def _publish(section: str, result: AnalysisResult) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    rows = table_rows(result.tables[section])
    key = f"analysis-{section.replace('_', '-')}"
    create_table_artifact(rows or [{"note": "no rows yet"}], key=key, description=TITLES[section])
    pictures = result.figures.get(section, [])
    if pictures:
        body = f"# {TITLES[section]}\n\n{figures_markdown(pictures)}"
        create_markdown_artifact(body, key=f"{key}-figures", description=f"{TITLES[section]}: figures")


@flow(name="analyse-study")
def analyse_study(config: AnalysisConfig = AnalysisConfig(), warehouse: str | None = None) -> AnalysisResult:
    """Read the warehouse and write the study's figures and tables (see
    :mod:`editcollapse.stages.analysis.run`); each section is a task run with a table artifact and
    a figures artifact."""
    store = Warehouse(warehouse)
    out = config.output_dir(store)
    config = dataclasses.replace(config, output=str(out))  # every section writes into the same folder
    tables: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    for section in config.sections:
        result = analyse_section_task(config, store.location, section)
        _publish(section, result)
        tables.update(result.tables)
        figures.update(result.figures)
        files.update(result.files)
        run_logger(__name__).info(
            f"{section}: {len(result.tables[section])} row(s), {len(result.figures.get(section, []))} figure(s)"
        )
    markdown, html = write_reports(tables, figures, files, out, store.location, config.threshold)
    run_logger(__name__).info(f"analysis written to {out} (open {html})")
    return AnalysisResult(
        output=str(out), report=str(markdown), html=str(html), files=files, figures=figures, tables=tables
    )
