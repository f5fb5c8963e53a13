"""The collapse rule: when one edit (or a run of edits) has broken a model.

The paper's rule: a model has collapsed when its ME-PPL (mean per-sentence perplexity) exceeds
1000 (single edits are measured on ME-PPL-50, :data:`DEFAULT_PPL_CORPUS`). A perplexity that is
not a finite number (NaN or inf) — or missing altogether — counts as collapsed too: a model whose
perplexity cannot be computed is never dropped from the count.
Every stage decides collapse here, in Python with :func:`is_collapsed` and in DuckDB with
:func:`collapsed_sql`, so both always agree.
"""

from __future__ import annotations

import math

COLLAPSE_THRESHOLD = 1000.0
#: The corpus single-edit collapse is measured on (sweeps, HardCF, HardEdit, downstream); the name
#: of a released corpus of :mod:`editcollapse.datasets.ppl`.
DEFAULT_PPL_CORPUS = "me-ppl-50"


def is_collapsed(ppl: float | None, threshold: float = COLLAPSE_THRESHOLD) -> bool:
    """Perplexity above ``threshold``, or not finite (NaN, inf, missing)."""
    return ppl is None or not math.isfinite(ppl) or ppl > threshold


def collapsed_sql(column: str, threshold: float = COLLAPSE_THRESHOLD) -> str:
    """The DuckDB predicate of :func:`is_collapsed` on ``column`` (an SQL expression from code, never
    user input); ``threshold`` is rendered as a DOUBLE literal, so inf and nan work too."""
    limit = f"CAST('{float(threshold)!r}' AS DOUBLE)"
    return f"({column} IS NULL OR NOT isfinite({column}) OR {column} > {limit})"
