"""How the CLI prints one value in a rich table cell."""

from __future__ import annotations


def cell(value: object, *, null: str = "—", digits: int = 4) -> str:
    """``value`` as table text: ``null`` for None, floats to ``digits`` significant digits."""
    if value is None:
        return null
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
