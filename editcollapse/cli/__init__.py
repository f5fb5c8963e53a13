"""The `editcollapse` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from editcollapse.cli import data as data_cli
from editcollapse.cli import downstream as downstream_cli
from editcollapse.cli import hardedit as hardedit_cli
from editcollapse.cli import hparams as hparams_cli
from editcollapse.cli import mend as mend_cli
from editcollapse.cli import models as models_cli
from editcollapse.cli import ops as ops_cli
from editcollapse.cli import screen as screen_cli
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
screen_cli.register(app)
hardedit_cli.register(app)
downstream_cli.register(app)
ops_cli.register(app)
mend_cli.register(app)
hparams_cli.register(app)


USER_ERRORS = (UserError, ValueError, FileNotFoundError)  # bad input: what the message says fixes it
DEBUG_FLAG = "--debug"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``argv``: the arguments, default ``sys.argv[1:]``). An error the
    user fixes (a bad option value, a model or file that is not there, an editor not ready, a refused
    run) is one line ``error: <what> — <how to fix>`` on stderr and exit code 2; an unexpected one (a
    bug) is one line naming the log file that holds its traceback, and exit code 1. ``--debug``
    anywhere on the command line (or ``EDITCOLLAPSE_DEBUG=1``) raises instead, with the traceback."""
    from typer.exceptions import TyperException  # the base of typer's (vendored) click errors

    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in arguments or bool(os.environ.get("EDITCOLLAPSE_DEBUG"))
    arguments = [argument for argument in arguments if argument != DEBUG_FLAG]
    try:
        code = app(args=arguments, prog_name="editcollapse", standalone_mode=False)
    except TyperException as error:  # an unknown option, a value of the wrong type or out of range
        message = error.format_message().rstrip(".")
        if not message:  # a group called with no command: its help is printed already
            sys.exit(error.exit_code)
        context = getattr(error, "ctx", None)
        command = " ".join(["editcollapse", *context.command_path.split()[1:]]) if context else "editcollapse"
        _fail(f"{message} — see `{command} --help`", error.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except USER_ERRORS as error:
        if debug:
            raise
        _fail(f"{_one_line(error)} ({DEBUG_FLAG} shows the traceback)", 2)
    except Exception as error:
        if debug:
            raise
        log = _write_traceback(arguments)
        _fail(f"unexpected {type(error).__name__}: {_one_line(error)} — the traceback is in {log}; please report it", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(error: BaseException) -> str:
    """``error``'s message on one line (a message listing where to put a missing file has several)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def _write_traceback(arguments: list[str]) -> str:
    """Write the traceback being handled to a new file under the cache's ``logs`` folder; its path."""
    import time
    import traceback

    from editcollapse.core.paths import cache_dir

    try:
        folder = cache_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"editcollapse {' '.join(arguments)}\n\n{traceback.format_exc()}", encoding="utf-8")
    except OSError as error:  # an unwritable cache: the traceback goes to stderr instead
        traceback.print_exc()
        return f"the output above (no log file: {error})"
    return str(path)
