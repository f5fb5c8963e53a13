"""One shard of a sweep: computed once, by one worker, its parts written with the ``edits`` part last.

Pure Python (no Prefect): :func:`run_shard` is what a Prefect task wraps, and
:func:`~editcollapse.stages.sweep.run.run_sweep` calls it for every missing shard in one process.
A shard's outcomes come from :func:`~editcollapse.stages.sweep.engines.engine_for`'s engine; a failed
case is an ``edits`` row with status ``error`` and its message, and the shard goes on. A shard's parts
are written ``cases``, ``edit_metrics``, ``ppl`` and ``edits`` last: the ``edits`` part is the shard's
completion mark, so a shard killed before it is recomputed and its other parts are replaced, never
duplicated. With ``retry_errors`` a finished shard holding ``error`` rows computes those cases again
and rewrites its parts with their new rows in place of the old ones: its ``edits`` part is removed
first and written last again, so a retry killed half-way leaves a shard that is computed again,
never a retried case's rows in some tables and its old ``error`` row in ``edits``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.stages.sweep.engines import engine_for
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.resources import ResourceCache, SweepResources
from editcollapse.warehouse.store import Warehouse


@dataclass
class ShardResult:
    """What a finished shard reports to the flow (the rows themselves are in the warehouse)."""

    shard: int
    n_cases: int
    n_errors: int
    n_collapsed: int
    ppl_means: list[float]
    skipped: bool = False  # already in the warehouse: nothing was computed
    claimed_elsewhere: bool = False  # another worker holds the shard's claim and computes it


SHARD_TABLES = ("cases", "edit_metrics", "ppl", "edits")
"""The tables a shard writes, in order: its ``edits`` part, written last, is its completion mark."""


def shard_done(warehouse: Warehouse, spec: SweepConfig, shard: int) -> bool:
    """Whether the shard's completion mark is there and every one of its parts is sound; an unsound
    part is quarantined (:meth:`Warehouse.sound_parts`), so the shard is computed again."""
    keys = (spec.model, spec.method, spec.run_id, shard)
    return warehouse.has_part("edits", *keys) and warehouse.sound_parts(SHARD_TABLES, *keys)


def shard_errors(warehouse: Warehouse, spec: SweepConfig, shard: int) -> set[str]:
    """The case ids of a finished shard's ``error`` rows."""
    columns = ["case_id", "status"]
    edits = warehouse.read_part("edits", spec.model, spec.method, spec.run_id, shard, columns=columns).to_pydict()
    return {case for case, status in zip(edits["case_id"], edits["status"], strict=True) if status == "error"}


def run_shard(
    spec: SweepConfig,
    shard: int,
    cases: Sequence[EditCase],
    warehouse: Warehouse,
    *,
    cache: ResourceCache,
    on_case: Callable[[str], None] | None = None,
) -> ShardResult:
    """Edit, measure and restore for every case of one shard; write its parts; report counts.

    A shard already in the warehouse is not recomputed (its stored counts are returned), except its
    ``error`` cases when ``spec.retry_errors`` is set. Several workers may run the same run id: a
    shard is computed only by the worker holding its claim (:meth:`Warehouse.claim`); the others
    skip it (``claimed_elsewhere``). The model and the rest of the resources come from ``cache``,
    loaded there only when the shard is computed.
    ``on_case(case_id)`` is called after each case (progress bars).
    """
    if _nothing_to_do(warehouse, spec, shard):
        return _stored_result(warehouse, spec, shard)
    if not warehouse.claim(spec.model, spec.method, spec.run_id, shard):
        return ShardResult(
            shard=shard, n_cases=0, n_errors=0, n_collapsed=0, ppl_means=[], skipped=True, claimed_elsewhere=True
        )
    try:
        if _nothing_to_do(warehouse, spec, shard):  # finished by the claim's previous holder meanwhile
            return _stored_result(warehouse, spec, shard)
        resources = cache.get(spec)
        if shard_done(warehouse, spec, shard):  # done with errors, and they are retried
            errors = shard_errors(warehouse, spec, shard)
            retried = [case for case in cases if case.case_id in errors]
            fresh = _shard_rows(spec, shard, retried, warehouse, resources, on_case)
            rows = _merged(warehouse, spec, shard, cases, fresh)
            # unmarked until rewritten: a kill in between leaves a shard that is recomputed, never
            # a retried case's new ppl row beside its old error row
            warehouse.remove_part("edits", spec.model, spec.method, spec.run_id, shard)
        else:
            rows = _shard_rows(spec, shard, cases, warehouse, resources, on_case)
        return _write_shard(spec, shard, rows, warehouse)
    finally:
        warehouse.release(spec.model, spec.method, spec.run_id, shard)


def _nothing_to_do(warehouse: Warehouse, spec: SweepConfig, shard: int) -> bool:
    """Whether the shard is done and, when errors are retried, holds none."""
    if not shard_done(warehouse, spec, shard):
        return False
    return not spec.retry_errors or not shard_errors(warehouse, spec, shard)


def _merged(
    warehouse: Warehouse,
    spec: SweepConfig,
    shard: int,
    cases: Sequence[EditCase],
    fresh: dict[str, list[dict[str, Any]]],
) -> dict[str, list[dict[str, Any]]]:
    """The shard's stored rows with those of the recomputed cases replaced by ``fresh``, in case order."""
    replaced = {row["case_id"] for row in fresh["edits"]}
    order = {case.case_id: index for index, case in enumerate(cases)}
    merged = {}
    for table in SHARD_TABLES:
        stored = warehouse.read_part(table, spec.model, spec.method, spec.run_id, shard).to_pylist()
        kept = [row for row in stored if row["case_id"] not in replaced]
        merged[table] = sorted(kept + fresh[table], key=lambda row: order[row["case_id"]])
    return merged


def _shard_rows(
    spec: SweepConfig,
    shard: int,
    cases: Sequence[EditCase],
    warehouse: Warehouse,
    resources: SweepResources,
    on_case: Callable[[str], None] | None,
) -> dict[str, list[dict[str, Any]]]:
    """Every row the shard's ``cases`` give, by table."""
    rows: dict[str, list[dict[str, Any]]] = {"cases": [], "edit_metrics": [], "ppl": [], "edits": []}
    for outcome in engine_for(spec, resources).outcomes(cases):
        case = outcome.case
        base = {"run_id": spec.run_id, "case_id": case.case_id, "shard": shard}
        rows["cases"].append({**case.to_row(), **base})
        rows["edit_metrics"].extend({**base, "phase": "pre", "metric": k, "value": v} for k, v in outcome.pre.items())
        rows["edits"].append({**base, **outcome.edit_row})
        rows["edit_metrics"].extend({**base, "phase": "post", "metric": k, "value": v} for k, v in outcome.post.items())
        if outcome.ppl_row is not None:
            rows["ppl"].append({**base, **outcome.ppl_row})
        warehouse.touch_claim(spec.model, spec.method, spec.run_id, shard)
        if on_case is not None:
            on_case(case.case_id)
    return rows


def _write_shard(
    spec: SweepConfig, shard: int, rows: dict[str, list[dict[str, Any]]], warehouse: Warehouse
) -> ShardResult:
    """Write the shard's parts, ``edits`` (its completion mark) last; report its counts."""
    for table in SHARD_TABLES:
        warehouse.write_part(table, rows[table], model=spec.model, method=spec.method, run_id=spec.run_id, shard=shard)
    ppl_means = [row["ppl_mean"] for row in rows["ppl"]]
    return ShardResult(
        shard=shard,
        n_cases=len(rows["edits"]),
        n_errors=sum(row["status"] != "ok" for row in rows["edits"]),
        n_collapsed=sum(row["collapsed"] for row in rows["ppl"]),
        ppl_means=ppl_means,
    )


def _stored_result(warehouse: Warehouse, spec: SweepConfig, shard: int) -> ShardResult:
    edits = (
        warehouse.read_part("edits", spec.model, spec.method, spec.run_id, shard, columns=["status"])
        .column("status")
        .to_pylist()
    )
    ppl = warehouse.read_part(
        "ppl", spec.model, spec.method, spec.run_id, shard, columns=["ppl_mean", "collapsed"]
    ).to_pydict()
    return ShardResult(
        shard=shard,
        n_cases=len(edits),
        n_errors=sum(s != "ok" for s in edits),
        n_collapsed=sum(ppl["collapsed"]),
        ppl_means=ppl["ppl_mean"],
        skipped=True,
    )
