"""What the editor measurement scripts share: the metrics they report, the cases they pick, a NaN-aware mean.

Imported by ``bench/rome_layer_sweep.py``, ``bench/rome_variants.py``, ``bench/memit_ft_smollm2.py`` and
``bench/alphaedit_smollm2.py`` (run as scripts, so this folder is on ``sys.path``).
"""

from __future__ import annotations

import math
import statistics

from editcollapse.datasets import load_cases

METRICS = ("efficacy_success", "paraphrase_success", "neighborhood_success")


def spread_cases(source: str, n: int) -> list:
    """``n`` cases spread evenly over the source, so relations and templates mix (the cases the
    SmolLM2 ROME test uses for n = 20)."""
    cases = load_cases(source).cases
    return cases[:: max(1, len(cases) // n)][:n]


def mean_of(rows: list[dict], key: str) -> float:
    """Mean of ``key`` over the rows that have a number for it (NaN where none has)."""
    values = [row[key] for row in rows if key in row and not math.isnan(row[key])]
    return statistics.fmean(values) if values else float("nan")
