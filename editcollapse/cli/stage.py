"""Running a stage from the command line: build its typed config, run it as a Prefect flow or as
the plain function (``--no-prefect``), print its result.

Every stage command is the same three steps, so each command module only maps its options to the
stage's config class.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from editcollapse.core.errors import RunRefused
from editcollapse.core.registry import import_object
from editcollapse.stages.result import StageResult

Config = TypeVar("Config")


def prefect_defaults() -> None:
    """No telemetry; give the ephemeral server time to start on a busy machine (default 20 s)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def make_config(config_class: Callable[..., Config], **fields: Any) -> Config:
    """The stage config from the command's options; an invalid value is one line and exit code 2."""
    try:
        return config_class(**fields)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error


def run_stage(
    config: Any,
    warehouse: str | None,
    *,
    prefect: bool,
    flow: str,
    plain: str,
    progress: str | None = None,
    **flow_options: Any,
) -> StageResult:
    """The flow at ``flow`` (``"package.module:name"``) as a Prefect flow run, or the function at
    ``plain`` (the same form) as ``plain(config, Warehouse(warehouse))`` (with ``progress``, the label of its progress bar, also
    ``on_progress=``: the flows draw their own), after the config's ``preflight()``: a mistake (an unknown
    model, an untrained editor …) raises before Prefect starts or a ``runs`` row is written, and the
    entry point prints it as one line. Both are imported here, after the preflight (a refused run
    loads no torch) and :func:`prefect_defaults` (Prefect reads its settings once, when it is first imported). A refused run (:class:`RunRefused`)
    is one line and exit code 2; a failing file system (a full disk, a read-only folder) one line and
    exit code 1 (what was stored is kept: the same command resumes); a missing file is left to the
    entry point (one line, exit code 2)."""
    preflight = getattr(config, "preflight", None)  # a config without one has nothing to check beforehand
    try:
        if preflight is not None:
            preflight()
        if prefect:
            prefect_defaults()
            return import_object(flow)(config=config, warehouse=warehouse, **flow_options)
        from editcollapse.warehouse.store import Warehouse

        show_progress_lines()
        run = import_object(plain)
        if progress is None:
            return run(config, Warehouse(warehouse))
        from editcollapse.orchestration.progress import ProgressBar

        with ProgressBar(progress) as bar:
            return run(config, Warehouse(warehouse), on_progress=bar.update)
    except RunRefused as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    except FileNotFoundError:  # a missing input: the entry point's one line, exit code 2
        raise
    except OSError as error:  # a full disk, a read-only folder
        typer.echo(f"error: {error} — free space or make it writable, then run the same command: it resumes", err=True)
        raise typer.Exit(1) from error


def show_progress_lines() -> None:
    """The stage's log lines (``INFO``) on stderr, as Prefect shows a flow's: a plain run is not silent."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")


def print_json(result: StageResult) -> None:
    """The result's summary as JSON on stdout (for scripts and ``jq``)."""
    typer.echo(json.dumps(result.to_dict(), indent=2))
