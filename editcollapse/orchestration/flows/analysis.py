"""Stage 6 of the study as a Prefect flow: :func:`analyse_study` runs each section of
:func:`editcollapse.stages.analysis.run.run_analysis` as a task run, publishes each section's table
as a table artifact and its figures as a markdown artifact, and writes the merged ``report.md``.
The outputs and their file names are those of :mod:`editcollapse.stages.analysis.run`; without
Prefect, call ``run_analysis`` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from editcollapse.core.collapse import COLLAPSE_THRESHOLD
from editcollapse.orchestration.artifacts import figures_markdown, table_rows
from editcollapse.stages.analysis.report import TITLES, write_report
from editcollapse.stages.analysis.run import SECTIONS, check_sections, output_dir, run_analysis
from editcollapse.warehouse.store import Warehouse


@task(name="analysis-section", task_run_name="analyse-{section}", cache_policy=NO_CACHE)
def analyse_section_task(warehouse: str, output: str, threshold: float, section: str) -> dict[str, Any]:
    """One section of the analysis (a task run per section in the UI)."""
    return run_analysis(warehouse, output, threshold=threshold, sections=[section])


def _publish(section: str, result: dict[str, Any]) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    rows = table_rows(result["tables"][section])
    key = f"analysis-{section.replace('_', '-')}"
    create_table_artifact(rows or [{"note": "no rows yet"}], key=key, description=TITLES[section])
    pictures = result["figures"].get(section, [])
    if pictures:
        body = f"# {TITLES[section]}\n\n{figures_markdown(pictures)}"
        create_markdown_artifact(body, key=f"{key}-figures", description=f"{TITLES[section]}: figures")


@flow(name="analyse-study", log_prints=True)
def analyse_study(
    warehouse: str | None = None,
    output: str | None = None,
    threshold: float = COLLAPSE_THRESHOLD,
    sections: list[str] | None = None,
) -> dict[str, Any]:
    """Read the warehouse and write the study's figures and tables (see
    :mod:`editcollapse.stages.analysis.run`); each section is a task run with a table artifact and
    a figures artifact."""
    store = Warehouse(warehouse)
    chosen = list(sections or SECTIONS)
    check_sections(chosen)
    out = str(output_dir(store, output))
    merged: dict[str, Any] = {"output": out, "tables": {}, "figures": {}, "files": {}}
    for section in chosen:
        result = analyse_section_task(store.location, out, threshold, section)
        _publish(section, result)
        for key in ("tables", "figures", "files"):
            merged[key].update(result[key])
        print(
            f"{section}: {len(result['tables'][section])} row(s), {len(result['figures'].get(section, []))} figure(s)"
        )
    report = write_report(merged["tables"], merged["figures"], Path(out), store.location)
    merged["report"] = str(report)
    print(f"analysis written to {out} (report {report})")
    return merged
