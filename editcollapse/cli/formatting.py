"""How the CLI prints: one value in a rich table cell, and the console tables go to."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PIPED_WIDTH = 240


def cell(value: object, *, null: str = "—", digits: int = 4) -> str:
    """``value`` as table text: ``null`` for None, floats to ``digits`` significant digits."""
    if value is None:
        return null
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def console() -> Console:
    """The console for command output: the terminal's width, or ``PIPED_WIDTH`` columns when the
    output is piped or logged (rich would squeeze every table into 80 columns and cut its cells)."""
    from rich.console import Console

    plain = Console()
    return plain if plain.is_terminal else Console(width=PIPED_WIDTH)
