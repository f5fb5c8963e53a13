"""Where the hard and normal groups come from: the warehouse (``hardcf`` + ``ppl``) or a HardCF file.

``hard_source``:

* ``"hardcf"`` — the ``hardcf`` table (cases whose single edit collapsed any model) are the
  collapsed cases; the fill candidates are this model × method's single-edit perplexities in the
  ``ppl`` table (a case flagged ``collapsed`` there counts as collapsed too). Works before any
  HardCF selection exists: the group is then the top of the ``ppl`` ranking.
* a file path — every case in it (HardCF/HardEdit form, via ``load_cases``) is a collapsed case;
  its single-edit perplexity is read from a ``rome_*_ppl`` field when the file has one. Fewer
  than asked for are filled from the ``ppl`` table as above.

The normal group is drawn from ``dataset`` (``load_cases``), disjoint from the hard group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from editcollapse.core.case import EditCase
from editcollapse.stages.sequential.groups import Member, Scored, sample_normal, select_hard
from editcollapse.warehouse import Warehouse


@dataclass(frozen=True)
class Groups:
    """The two groups of a sequential run."""

    hard: list[Member]
    normal: list[Member]


def _max_by_case(rows: list[dict], value: str) -> dict[str, float | None]:
    """case_id → the largest finite-or-not ``value`` over rows (NaN/inf rank as collapse, highest)."""
    best: dict[str, float | None] = {}
    for row in rows:
        ppl = row[value]
        ppl = math.inf if ppl is not None and math.isnan(ppl) else ppl
        current = best.get(row["case_id"])
        if row["case_id"] not in best or (ppl is not None and (current is None or ppl > current)):
            best[row["case_id"]] = ppl
    return best


def warehouse_candidates(
    warehouse: Warehouse, model: str, method: str, sweep_run: str | None = None
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(collapsed case ids → single-edit ppl, fill candidates → single-edit ppl) from the tables.

    ``sweep_run``: only that single-edit sweep's ``ppl`` rows and the ``hardcf`` rows it sourced
    (default: every sweep of this model × method, and every ``hardcf`` row)."""
    ppl_rows = warehouse.read("ppl", model=model, method=method, run_id=sweep_run).to_pylist()
    if sweep_run is not None and not ppl_rows:
        raise ValueError(f"the ppl table has no rows of sweep run {sweep_run!r} for {model} × {method}")
    ranked = _max_by_case(ppl_rows, "ppl_mean")
    collapsed = {row["case_id"]: ranked.get(row["case_id"]) for row in ppl_rows if row["collapsed"]}
    hardcf = [
        row for row in warehouse.read("hardcf").to_pylist() if sweep_run is None or row["source_run_id"] == sweep_run
    ]
    for case_id, ppl in _max_by_case(hardcf, "ppl_mean").items():
        collapsed.setdefault(case_id, ranked.get(case_id, ppl))
    return collapsed, ranked


def _file_ppl(case: EditCase) -> float | None:
    """A HardCF/HardEdit record's single-edit perplexity (``rome_<model>_ppl``), when present."""
    values = [float(v) for k, v in sorted(case.extra.items()) if k.endswith("_ppl") and isinstance(v, int | float)]
    return max(values) if values else None


def build_groups(
    hard_source: str,
    pool: list[EditCase],
    size: int,
    seed: int,
    *,
    warehouse: Warehouse,
    model: str,
    method: str,
    sweep_run: str | None = None,
) -> Groups:
    """Both groups of ``size`` cases; ``pool`` is the dataset the hard ids refer to and the normal
    cases are drawn from. A normal member's ``single_ppl`` is its single-edit perplexity where the
    sweep measured it (else None)."""
    by_id = {case.case_id: case for case in pool}
    if hard_source == "hardcf":
        collapsed_ppl, ranked_ppl = warehouse_candidates(warehouse, model, method, sweep_run)
        missing = sorted(set(collapsed_ppl) - set(by_id))
        if missing:
            raise ValueError(
                f"hardcf/ppl tables name case(s) {missing[:5]} that the dataset does not "
                "hold: pass the dataset the sweep used"
            )
        collapsed = [Scored(by_id[i], p) for i, p in collapsed_ppl.items()]
        ranked = [Scored(by_id[i], p) for i, p in ranked_ppl.items() if i in by_id]
    else:
        path = Path(hard_source)
        if not path.exists():
            raise FileNotFoundError(f"hard_source {hard_source!r} is neither 'hardcf' nor an existing file")
        from editcollapse.datasets import load_cases

        loaded = load_cases(str(path), strict=True)
        collapsed = [Scored(case, _file_ppl(case)) for case in loaded.cases]
        _, ranked_ppl = warehouse_candidates(warehouse, model, method, sweep_run)
        ranked = [Scored(by_id[i], p) for i, p in ranked_ppl.items() if i in by_id]
    hard = select_hard(collapsed, ranked, size)
    normal = [
        Member(m.case, m.role, ranked_ppl.get(m.case.case_id))
        for m in sample_normal(pool, [member.case for member in hard], size, seed)
    ]
    return Groups(hard=hard, normal=normal)
