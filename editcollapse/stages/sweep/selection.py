"""A screened selection: the sweep's cases chosen from a ``screen`` run (the riskiest N, or a SQL filter).

The screen (:mod:`editcollapse.stages.screen`) ranks cases by the bound on ROME's ‖ΔW‖ from forward
passes alone; sweeping only the riskiest cases finds collapses at a fraction of a full sweep's cost.
The selection is read from the warehouse when the sweep starts; the cases keep the dataset's order,
so shards are stable, and the selected cases' digest is part of the run's identity.
"""

from __future__ import annotations

from collections.abc import Sequence

from editcollapse.core.case import EditCase
from editcollapse.warehouse.catalog import check_query, connect
from editcollapse.warehouse.store import Warehouse


def screened_case_ids(warehouse: Warehouse, screen_run: str, *, top: int | None, where: str | None) -> list[str]:
    """The ``ok`` cases of screen run ``screen_run`` that pass ``where`` (SQL over the ``screen``
    table's columns), riskiest first, the first ``top`` of them (all without ``top``)."""
    import duckdb

    condition = f" AND ({where})" if where else ""
    limit = f" LIMIT {int(top)}" if top is not None else ""
    sql = check_query(
        f"SELECT case_id FROM screen WHERE run_id = $run AND status = 'ok'{condition} "
        f"ORDER BY risk DESC, case_id{limit}"
    )
    connection = connect(warehouse)
    try:
        ids = [row[0] for row in connection.execute(sql, {"run": screen_run}).fetchall()]
        stored = connection.execute("SELECT count(*) FROM screen WHERE run_id = $run", {"run": screen_run}).fetchone()
    except duckdb.Error as error:
        raise ValueError(
            f"the --select filter {where!r} fails on the screen table: {str(error).splitlines()[0]} — "
            "write a SQL condition over its columns (risk, denominator, bos …: docs/stages/screen.md)"
        ) from None
    if not stored[0]:
        raise ValueError(
            f"screen run {screen_run!r} has no rows in {warehouse.location} — run `editcollapse screen` first "
            '(`editcollapse sql "SELECT DISTINCT run_id FROM screen"` lists the screened runs)'
        )
    return ids


def select_screened(
    warehouse: Warehouse, cases: Sequence[EditCase], screen_run: str, *, top: int | None, where: str | None
) -> list[EditCase]:
    """The cases of ``cases`` that :func:`screened_case_ids` selects, in their own order; every
    selected case must be one of ``cases`` (the screen ran on the same dataset)."""
    selected = set(screened_case_ids(warehouse, screen_run, top=top, where=where))
    chosen = [case for case in cases if case.case_id in selected]
    if len(chosen) != len(selected):
        missing = sorted(selected - {case.case_id for case in cases})
        raise ValueError(
            f"{len(missing)} cases selected from screen run {screen_run!r} are not among the sweep's cases "
            f"(first: {missing[0]!r}) — sweep the dataset that run screened (--dataset)"
        )
    if not chosen:
        raise ValueError(f"no case of screen run {screen_run!r} passes the selection — widen --select or --top")
    return chosen
