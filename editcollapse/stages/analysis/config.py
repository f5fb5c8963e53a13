"""What an analysis run writes: which sections, where, and the collapse threshold they count with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from editcollapse.core.collapse import COLLAPSE_THRESHOLD

if TYPE_CHECKING:
    from editcollapse.warehouse.store import Warehouse


SECTIONS = ("single_edit", "hard_cases", "sequential", "downstream")


@dataclass(frozen=True)
class AnalysisConfig:
    """Which sections to write, where, and the collapse threshold they count with."""

    threshold: float = COLLAPSE_THRESHOLD
    output: str | None = None  # default ``<warehouse local folder>/analysis``
    sections: tuple[str, ...] = SECTIONS

    def __post_init__(self) -> None:
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown analysis section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")

    def output_dir(self, warehouse: Warehouse) -> Path:
        """``output``, or the warehouse's local ``analysis`` folder."""
        return Path(self.output) if self.output is not None else warehouse.local_dir / "analysis"
