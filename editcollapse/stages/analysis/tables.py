"""The analysis tables, read from the warehouse with DuckDB and derived in plain Python.

Every function takes a DuckDB session over the warehouse catalog (``editcollapse.warehouse.catalog.connect``)
or the rows it read; a table with no rows yet gives an empty list, never an error.
"""

from __future__ import annotations

import math
from typing import Any

from editcollapse.core.collapse import collapsed_sql
from editcollapse.stages.downstream.correlation import correlations
from editcollapse.stages.sweep.summary import quantile

RunRows = dict[tuple[str, str, str], list[dict[str, Any]]]  # (model, method, run) → rows


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


def single_edit_values(session: Any) -> dict[tuple[str, str], list[float | None]]:
    """Every single-edit ME-PPL, grouped by (model, method)."""
    groups: dict[tuple[str, str], list[float | None]] = {}
    for model, method, value in session.execute("SELECT model, method, ppl_mean FROM ppl ORDER BY ALL").fetchall():
        groups.setdefault((model, method), []).append(value)
    return groups


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


def rows_by_run(session: Any, table: str, order: str) -> RunRows:
    """A table's rows as dicts, grouped by (model, method, run) in ``order``."""
    cursor = session.execute(f"SELECT * FROM {table} ORDER BY model, method, run, {order}")
    names = [column[0] for column in cursor.description]
    runs: RunRows = {}
    for values in cursor.fetchall():
        row = dict(zip(names, values))
        runs.setdefault((row["model"], row["method"], row["run"]), []).append(row)
    return runs


def run_threshold(session: Any, model: str, method: str, run: str, default: float) -> float:
    """The collapse threshold a run recorded in ``runs`` (the largest, if several), else ``default``."""
    (recorded,) = session.execute(
        "SELECT max(threshold) FROM runs WHERE model = ? AND method = ? AND run = ?", [model, method, run]
    ).fetchone()
    return default if recorded is None else recorded


def sequential_table(runs: RunRows) -> list[dict[str, Any]]:
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


def downstream_table(runs: RunRows) -> list[dict[str, Any]]:
    """Per downstream run and task metric: Pearson (log10 ppl) and Spearman correlations with the score."""
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
