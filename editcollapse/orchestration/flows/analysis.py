"""Stage 6 of the study: read the warehouse, write the study's figures and tables.

``analyse_study`` (a Prefect flow; ``analyse_study.fn`` or :func:`analyse` without Prefect) reads
every stage's table and writes, into ``output`` (default ``<warehouse local folder>/analysis``):

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

In a flow run every table is also a table artifact and the figures a markdown artifact.
A stage with no rows yet is reported as such, never an error: the analysis runs at any point.
"""

from __future__ import annotations

import base64
import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, collapsed_sql
from editcollapse.stages.sweep.summary import quantile
from editcollapse.warehouse.store import Warehouse

SECTIONS = ("single_edit", "hard_cases", "sequential", "downstream")
CSV_NAMES = {
    "single_edit": "single-edit-ppl",
    "hard_cases": "hard-cases",
    "sequential": "sequential",
    "downstream": "downstream-correlation",
}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "run"


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no rows yet_\n"
    columns = list(rows[0])

    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(show(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- single-edit perplexity ---------------------------------------------------------------------


def single_edit_table(session: Any, threshold: float) -> list[dict[str, Any]]:
    """One row per (model, method, sweep run): the distribution of single-edit ME-PPL."""
    rows = session.execute(
        "SELECT p.model, p.method, p.run, any_value(r.dataset), any_value(p.corpus), list(p.ppl_mean), "
        f"count(*) FILTER (WHERE {collapsed_sql('p.ppl_mean', threshold)}), "
        "any_value(r.baseline_ppl_mean) FROM ppl p LEFT JOIN runs r USING (model, method, run) "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    table = []
    for model, method, run, dataset, corpus, values, collapsed, baseline in rows:
        finite = sorted(v for v in values if v is not None and math.isfinite(v))
        table.append(
            {
                "model": model,
                "method": method,
                "run": run,
                "dataset": dataset,
                "corpus": corpus,
                "cases": len(values),
                "collapsed": collapsed,
                "collapsed_pct": round(100.0 * collapsed / len(values), 3) if values else None,
                "nonfinite": len(values) - len(finite),
                "unedited_ppl": baseline,
                "median": quantile(finite, 0.5),
                "p90": quantile(finite, 0.9),
                "p99": quantile(finite, 0.99),
                "max": finite[-1] if finite else None,
            }
        )
    return table


def plot_single_edit(session: Any, path: Path, threshold: float) -> Path | None:
    """Histogram of log10 single-edit ME-PPL, one outline per (model, method); NaN/inf counted in
    the legend (they cannot be drawn on the axis)."""
    groups: dict[tuple[str, str], list[float]] = {}
    for model, method, value in session.execute("SELECT model, method, ppl_mean FROM ppl ORDER BY ALL").fetchall():
        groups.setdefault((model, method), []).append(value)
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


# --- hard cases ---------------------------------------------------------------------------------


def hard_cases_table(session: Any) -> list[dict[str, Any]]:
    """HardCF selections (per source model) and HardEdit filter runs (per reference model)."""
    table = [
        {"stage": "hardcf", "run": run, "model": model, "cases": cases, "kept": kept}
        for run, model, cases, kept in session.execute(
            "SELECT run_id, source_model, count(DISTINCT case_id), count(DISTINCT case_id) FILTER "
            "(WHERE collapsed) FROM hardcf GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    ]
    table += [
        {"stage": "hardedit", "run": run, "model": model, "cases": cases, "kept": kept}
        for run, model, cases, kept in session.execute(
            "SELECT run_id, reference_model, count(*), count(*) FILTER (WHERE kept) FROM hardedit "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    ]
    return table


# --- sequential ---------------------------------------------------------------------------------


def rows_by_run(session: Any, table: str, order: str) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """A table's rows as dicts, grouped by (model, method, run) in ``order``."""
    cursor = session.execute(f"SELECT * FROM {table} ORDER BY model, method, run, {order}")
    names = [column[0] for column in cursor.description]
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for values in cursor.fetchall():
        row = dict(zip(names, values))
        runs.setdefault((row["model"], row["method"], row["run"]), []).append(row)
    return runs


def sequential_table(runs: dict[tuple[str, str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per run and group: trajectories, how many collapsed, at which edit, the final perplexity."""
    table = []
    for (model, method, run), rows in runs.items():
        trajectories: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in rows:
            trajectories.setdefault((row["group"], row["trial"]), []).append(row)
        for group in sorted({g for g, _ in trajectories}):
            mine = [sorted(t, key=lambda r: r["step"]) for (g, _), t in sorted(trajectories.items()) if g == group]
            collapse_steps = [next((r["step"] for r in t if r.get("collapsed")), None) for t in mine]
            finals = [next((r["ppl_mean"] for r in reversed(t) if r.get("ppl_mean") is not None), None) for t in mine]
            at = sorted(s for s in collapse_steps if s is not None)
            table.append(
                {
                    "model": model,
                    "method": method,
                    "run": run,
                    "group": group,
                    "trajectories": len(mine),
                    "edits": max((r["step"] for t in mine for r in t), default=0),
                    "collapsed": len(at),
                    "first_collapse_step": at[0] if at else None,
                    "median_collapse_step": quantile([float(s) for s in at], 0.5),
                    "median_final_ppl": quantile(sorted(f for f in finals if f is not None), 0.5),
                }
            )
    return table


# --- downstream ---------------------------------------------------------------------------------


def downstream_table(runs: dict[tuple[str, str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    from editcollapse.stages.downstream.correlation import correlations

    return [
        {
            "model": model,
            "method": method,
            "run": run,
            "task": c.task,
            "metric": c.metric,
            "n": c.n,
            "excluded": c.n_excluded,
            "pearson_r_log10ppl": c.pearson_r,
            "pearson_p": c.pearson_p,
            "spearman_rho": c.spearman_rho,
            "spearman_p": c.spearman_p,
        }
        for (model, method, run), rows in runs.items()
        for c in correlations(rows)
    ]


# --- the whole analysis -------------------------------------------------------------------------


def analyse(
    warehouse: str | Warehouse | None = None,
    output: str | Path | None = None,
    *,
    threshold: float = COLLAPSE_THRESHOLD,
    sections: Sequence[str] = SECTIONS,
) -> dict[str, Any]:
    """Write every figure and table of the study (see the module doc); return their paths and the
    tables. ``sections`` picks a subset of ``single_edit``, ``hard_cases``, ``sequential``,
    ``downstream``."""
    from editcollapse.stages.downstream.correlation import scatter_plot
    from editcollapse.stages.sequential.plots import plot_norms, plot_perplexity
    from editcollapse.warehouse.catalog import connect

    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown analysis section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    store = Warehouse(warehouse)
    out = Path(output) if output is not None else store.local_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    session = connect(store)
    tables: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, list[str]] = {}
    if "single_edit" in sections:
        tables["single_edit"] = single_edit_table(session, threshold)
        figure = plot_single_edit(session, out / "single-edit-ppl.png", threshold)
        figures["single_edit"] = [str(figure)] if figure else []
    if "hard_cases" in sections:
        tables["hard_cases"] = hard_cases_table(session)
        figures["hard_cases"] = []
    if "sequential" in sections:
        runs = rows_by_run(session, "sequential", '"group", trial, step')
        tables["sequential"] = sequential_table(runs)
        figures["sequential"] = []
        for (model, method, run), rows in runs.items():
            stem = out / f"sequential-{_slug(run)}"
            limit = max((r["threshold"] for r in _run_thresholds(session, model, method, run)), default=threshold)
            figures["sequential"] += [
                str(
                    plot_perplexity(
                        rows,
                        f"{stem}-perplexity.png",
                        threshold=limit,
                        title=f"{method} on {model}: sequential editing, hard vs normal ({run})",
                    )
                ),
                str(
                    plot_norms(
                        rows,
                        f"{stem}-weight-change.png",
                        title=f"{method} on {model}: cumulative weight change ({run})",
                    )
                ),
            ]
    if "downstream" in sections:
        runs = rows_by_run(session, "downstream", "task, metric, edit_ref")
        tables["downstream"] = downstream_table(runs)
        figures["downstream"] = [
            str(
                scatter_plot(
                    rows,
                    out / f"downstream-{_slug(run)}.png",
                    threshold=threshold,
                    title=f"{method} edits of {model}: perplexity vs downstream ({run})",
                )
            )
            for (model, method, run), rows in runs.items()
        ]
    files = {name: str(_write_csv(rows, out / f"{CSV_NAMES[name]}.csv")) for name, rows in tables.items()}
    report = out / "report.md"
    report.write_text(_report(tables, figures, out, store))
    return {"output": str(out), "report": str(report), "tables": tables, "files": files, "figures": figures}


def _run_thresholds(session: Any, model: str, method: str, run: str) -> list[dict[str, Any]]:
    rows = session.execute(
        "SELECT threshold FROM runs WHERE model = ? AND method = ? AND run = ? AND threshold IS NOT NULL",
        [model, method, run],
    ).fetchall()
    return [{"threshold": value} for (value,) in rows]


TITLES = {
    "single_edit": "Single-edit perplexity (ME-PPL) per model, method and sweep",
    "hard_cases": "Hard cases: HardCF selections and HardEdit filter",
    "sequential": "Sequential editing: hard vs normal",
    "downstream": "Perplexity vs downstream performance",
}


def _report(tables: dict[str, list[dict[str, Any]]], figures: dict[str, list[str]], out: Path, store: Warehouse) -> str:
    lines = [f"# Study analysis\n\nwarehouse `{store.location}`\n"]
    for name, rows in tables.items():
        lines.append(f"## {TITLES[name]}\n\n{_markdown_table(rows)}")
        lines += [f"![{Path(f).stem}]({Path(f).relative_to(out)})\n" for f in figures.get(name, [])]
    return "\n".join(lines)


@task(name="analysis-section", task_run_name="analyse-{section}", cache_policy=NO_CACHE)
def analyse_section_task(warehouse: str, output: str, threshold: float, section: str) -> dict[str, Any]:
    """One section of the analysis (a task run per section in the UI)."""
    return analyse(warehouse, output, threshold=threshold, sections=[section])


def _publish(section: str, result: dict[str, Any]) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    rows = [{k: _finite(v) for k, v in row.items()} for row in result["tables"][section]]
    key = f"analysis-{section.replace('_', '-')}"
    create_table_artifact(rows or [{"note": "no rows yet"}], key=key, description=TITLES[section])
    pictures = result["figures"].get(section, [])
    if pictures:
        body = [f"# {TITLES[section]}\n"]
        for picture in pictures:
            encoded = base64.b64encode(Path(picture).read_bytes()).decode()
            body.append(
                f"### {Path(picture).stem}\n\n![{Path(picture).stem}](data:image/png;base64,{encoded})\n\n`{picture}`\n"
            )
        create_markdown_artifact("\n".join(body), key=f"{key}-figures", description=f"{TITLES[section]}: figures")


@flow(name="analyse-study", log_prints=True)
def analyse_study(
    warehouse: str | None = None,
    output: str | None = None,
    threshold: float = COLLAPSE_THRESHOLD,
    sections: list[str] | None = None,
) -> dict[str, Any]:
    """Read the warehouse and write the study's figures and tables (see the module doc); each
    section is a task run with a table artifact and a figures artifact."""
    store = Warehouse(warehouse)
    chosen = list(sections or SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown analysis section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    out = str(Path(output) if output is not None else store.local_dir / "analysis")
    merged: dict[str, Any] = {"output": out, "tables": {}, "figures": {}, "files": {}}
    for section in chosen:
        result = analyse_section_task(store.location, out, threshold, section)
        _publish(section, result)
        for key in ("tables", "figures", "files"):
            merged[key].update(result[key])
        print(
            f"{section}: {len(result['tables'][section])} row(s), {len(result['figures'].get(section, []))} figure(s)"
        )
    report = Path(out) / "report.md"
    report.write_text(_report(merged["tables"], merged["figures"], Path(out), store))
    merged["report"] = str(report)
    print(f"analysis written to {out} (report {report})")
    return merged
