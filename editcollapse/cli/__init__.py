"""The `editcollapse` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import typer

from editcollapse.cli import data as data_cli
from editcollapse.cli import downstream as downstream_cli
from editcollapse.cli import hardedit as hardedit_cli
from editcollapse.cli import mend as mend_cli
from editcollapse.cli import models as models_cli
from editcollapse.cli import ops as ops_cli
from editcollapse.cli import sequential as sequential_cli
from editcollapse.cli import sweep as sweep_cli
from editcollapse.cli import warehouse as warehouse_cli

app = typer.Typer(
    name="editcollapse",
    help="Large-scale studies of how knowledge editing collapses language models.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"editcollapse {version('editcollapse')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Large-scale studies of how knowledge editing collapses language models."""


data_cli.register(app)
models_cli.register(app)
sequential_cli.register(app)
warehouse_cli.register(app)
sweep_cli.register(app)
hardedit_cli.register(app)
downstream_cli.register(app)
ops_cli.register(app)
mend_cli.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
