"""The `editcollapse` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import os
import sys

import typer

from editcollapse.cli import data as data_cli
from editcollapse.cli import downstream as downstream_cli
from editcollapse.cli import hardedit as hardedit_cli
from editcollapse.cli import hparams as hparams_cli
from editcollapse.cli import mend as mend_cli
from editcollapse.cli import models as models_cli
from editcollapse.cli import ops as ops_cli
from editcollapse.cli import sequential as sequential_cli
from editcollapse.cli import sweep as sweep_cli
from editcollapse.cli import warehouse as warehouse_cli
from editcollapse.core.errors import UserError

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
hparams_cli.register(app)


USER_ERRORS = (UserError, ValueError, FileNotFoundError)  # bad input: what the message says fixes it
DEBUG_FLAG = "--debug"


def main() -> None:
    """Console-script entry point. An error the user fixes (bad input, a model or file that is not
    there, a refused run) is one line on stderr and exit code 2; ``--debug`` anywhere on the command
    line (or ``EDITCOLLAPSE_DEBUG=1``) shows its traceback instead."""
    debug = DEBUG_FLAG in sys.argv[1:] or bool(os.environ.get("EDITCOLLAPSE_DEBUG"))
    sys.argv[1:] = [argument for argument in sys.argv[1:] if argument != DEBUG_FLAG]
    try:
        app()
    except USER_ERRORS as error:
        if debug:
            raise
        typer.echo(f"error: {error} ({DEBUG_FLAG} shows the traceback)", err=True)
        sys.exit(2)
