"""`editcollapse models`: the models editcollapse knows and whether each loads offline."""

from __future__ import annotations

import typer
from rich.table import Table

from editcollapse.cli import formatting


def models() -> None:
    """List known models, their source, and whether each is available offline here.

    Example: editcollapse models
    """
    from editcollapse.models.registry import KNOWN_MODELS, available_offline

    table = Table(title="known models")
    for column in ("name", "family", "source", "offline", "note"):
        table.add_column(column)
    for model in KNOWN_MODELS.values():
        source = model.hub_id if model.source == "hub" else model.source
        table.add_row(model.name, model.family, source, "yes" if available_offline(model) else "no", model.note)
    console = formatting.console()
    console.print(table)
    console.print("Any local model folder or HuggingFace hub id (owner/name) is accepted too.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("models")(models)
