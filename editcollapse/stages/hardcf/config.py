"""What a HardCF selection reads and where it writes its JSON."""

from __future__ import annotations

from dataclasses import dataclass

from editcollapse.core.collapse import COLLAPSE_THRESHOLD


@dataclass(frozen=True)
class HardCFConfig:
    """What a HardCF selection reads and where it writes its JSON (the selection id digests the
    threshold, method, dataset and the source sweeps found)."""

    threshold: float = COLLAPSE_THRESHOLD
    method: str = "rome"
    models: tuple[str, ...] = ()  # only sweeps of these models (default: every model)
    runs: tuple[str, ...] = ()  # only these sweep run ids (default: every sweep of the method)
    dataset: str | None = None  # only cases of this dataset
    output: str | None = None  # the JSON export (default ``<warehouse>/exports/<selection id>.json``)
