"""The collapse rule: above the threshold or not finite; Python and the DuckDB predicate agree."""

from __future__ import annotations

import math

import duckdb
import pytest

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, collapsed_sql, is_collapsed

VALUES = [None, math.nan, math.inf, -math.inf, 0.0, 12.5, 999.999, 1000.0, 1000.0001, 5000.0, 1e300]


def test_threshold_is_the_papers() -> None:
    assert COLLAPSE_THRESHOLD == 1000.0


def test_above_the_threshold_collapses_and_the_boundary_does_not() -> None:
    assert not is_collapsed(999.0) and not is_collapsed(1000.0)
    assert is_collapsed(1000.0001) and is_collapsed(5000.0)
    assert is_collapsed(50.0, threshold=10.0) and not is_collapsed(10.0, threshold=10.0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, None])
def test_not_finite_or_missing_counts_as_collapsed(value) -> None:
    assert is_collapsed(value)
    assert is_collapsed(value, threshold=math.inf)


@pytest.mark.parametrize("threshold", [COLLAPSE_THRESHOLD, 0.0, 12.5, 999.999, math.inf])
def test_sql_predicate_agrees_with_python(threshold) -> None:
    session = duckdb.connect()
    session.execute("CREATE TABLE ppl (i INTEGER, ppl_mean DOUBLE)")
    session.executemany("INSERT INTO ppl VALUES (?, ?)", list(enumerate(VALUES)))
    rows = session.execute(f"SELECT i, {collapsed_sql('ppl_mean', threshold)} FROM ppl ORDER BY i").fetchall()
    assert [collapsed for _, collapsed in rows] == [is_collapsed(v, threshold) for v in VALUES]
    (count,) = session.execute(
        f"SELECT count(*) FILTER (WHERE {collapsed_sql('ppl_mean', threshold)}) FROM ppl"
    ).fetchone()
    assert count == sum(is_collapsed(v, threshold) for v in VALUES)
