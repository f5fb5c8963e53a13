"""What every stage returns: a typed result that states its own headline.

Each stage's ``run_*(config, warehouse)`` returns a frozen dataclass derived from
:class:`StageResult`. Its fields are the stage's numbers (what a test, the study flow or a
notebook reads by attribute), :meth:`StageResult.headline` is the one line the study table and the
CLI show, and :meth:`StageResult.to_dict` is the JSON the CLI prints and Prefect shows.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import PurePath
from typing import Any

_BULKY = "editcollapse.bulky"


@dataclasses.dataclass(frozen=True)
class StageResult:
    """Base of the stage results (no fields of its own)."""

    def headline(self) -> str:
        """The numbers worth a glance, in one line."""
        raise NotImplementedError(f"{type(self).__name__} must say its headline")

    def to_dict(self) -> dict[str, Any]:
        """The fields, bulky ones left out, as plain JSON values: paths as strings, tuples as lists,
        nested results as dicts, non-finite floats as ``"inf"``/``"nan"`` (as the HardCF export
        writes them)."""
        return {
            field.name: _plain(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if not field.metadata.get(_BULKY)
        }


def bulky() -> Any:
    """A result field too big to print or show (every record, every value): kept for callers,
    left out of :meth:`StageResult.to_dict` and the repr."""
    return dataclasses.field(repr=False, metadata={_BULKY: True})


def _plain(value: Any) -> Any:
    if isinstance(value, StageResult):
        return value.to_dict()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no number for them; float() reads them back
    return value
