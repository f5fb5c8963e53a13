"""Which cases a sequential trajectory edits: the hard group, the normal group, each trial's order.

The paper (§6.2) compares 107 HardCF cases with "an equal number of normal samples randomly
selected from the rest of CounterFact". Here:

* the hard group is the collapsed cases (highest single-edit perplexity first); where fewer
  collapsed than asked for, it is filled with the cases of highest single-edit perplexity that did
  not collapse, and every member says which it is (``role`` "collapsed" or "top_ppl");
* the normal group is a seeded random sample of the same size from the same case pool, disjoint
  from the hard group (by case id *and* by content, since a HardCF file's ids need not be the
  dataset's), ``role`` "random";
* each trial edits a seeded random ordering (of ``n_edits`` members) of its group.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from editcollapse.core.case import EditCase

# the `sequential` table's ``selection`` values
ROLES = ("collapsed", "top_ppl", "random")


@dataclass(frozen=True)
class Member:
    """One case of a group, with why it is there and its single-edit perplexity (when known)."""

    case: EditCase
    role: str
    single_ppl: float | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")


@dataclass(frozen=True)
class Scored:
    """A case with its single-edit perplexity (``None``: not measured)."""

    case: EditCase
    ppl: float | None


def content_key(case: EditCase) -> tuple[str, str]:
    """What makes two cases the same edit whatever their ids: the filled prompt and the new target."""
    return case.filled_prompt.strip(), case.target_new.strip()


def _ppl_order(item: Scored) -> tuple[float, str]:
    """Sort key: highest perplexity first (non-finite counts as highest, as collapse), then case id."""
    value = item.ppl
    if value is None:
        return (math.inf, item.case.case_id)  # unknown sorts last
    return (-(math.inf if not math.isfinite(value) else value), item.case.case_id)


def select_hard(collapsed: Sequence[Scored], ranked: Sequence[Scored], size: int) -> list[Member]:
    """The hard group: up to ``size`` collapsed cases, filled from ``ranked`` by single-edit perplexity.

    ``collapsed`` are the cases whose single edit collapsed a model (HardCF); ``ranked`` are cases
    with measured single-edit perplexities (the fill candidates; collapsed ones among them are
    skipped). Raises when the two together hold fewer than ``size`` distinct cases.
    """
    if size < 1:
        raise ValueError(f"group size must be ≥ 1, got {size}")
    members: list[Member] = []
    seen: set[tuple[str, str]] = set()
    ids: set[str] = set()
    for role, pool in (("collapsed", collapsed), ("top_ppl", ranked)):
        for item in sorted(pool, key=_ppl_order):
            if len(members) == size:
                return members
            if role == "top_ppl" and item.ppl is None:
                continue
            key = content_key(item.case)
            if key in seen or item.case.case_id in ids:
                continue
            seen.add(key)
            ids.add(item.case.case_id)
            members.append(Member(item.case, role, item.ppl))
    if len(members) < size:
        raise ValueError(
            f"asked for a hard group of {size} cases, but only {len(members)} are known "
            f"({sum(m.role == 'collapsed' for m in members)} collapsed, "
            f"{sum(m.role == 'top_ppl' for m in members)} with a measured single-edit "
            "perplexity): run a larger single-edit sweep or ask for fewer edits"
        )
    return members


def sample_normal(pool: Iterable[EditCase], exclude: Iterable[EditCase], size: int, seed: int) -> list[Member]:
    """``size`` random cases of ``pool`` (seeded), none of them an excluded case (by id or content).

    The pool is sorted by case id first, so the sample depends on the seed and the pool's content,
    not on the order the loader returned it in.
    """
    excluded = list(exclude)
    excluded_ids = {case.case_id for case in excluded}
    excluded_keys = {content_key(case) for case in excluded}
    candidates = sorted(
        (case for case in pool if case.case_id not in excluded_ids and content_key(case) not in excluded_keys),
        key=lambda case: case.case_id,
    )
    if len(candidates) < size:
        raise ValueError(
            f"asked for a normal group of {size} cases, but the pool has only "
            f"{len(candidates)} cases outside the hard group"
        )
    chosen = random.Random(seed).sample(candidates, size)
    return [Member(case, "random") for case in chosen]


def trial_order(members: Sequence[Member], n_edits: int, seed: int, trial: int) -> list[Member]:
    """The members trial ``trial`` edits, in order: a seeded random ordering of ``n_edits`` of them."""
    if n_edits < 1:
        raise ValueError(f"n_edits must be ≥ 1, got {n_edits}")
    count = min(n_edits, len(members))
    return random.Random(f"{seed}/trial/{trial}").sample(list(members), count)
