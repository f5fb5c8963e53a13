"""`editcollapse hparams`: the packaged hyperparameter files, to start one's own from (``--hparams FILE``)."""

from __future__ import annotations

from pathlib import Path

import typer

hparams_app = typer.Typer(
    help="Hyperparameters: print the packaged files to start your own from (pass it with --hparams FILE).",
    no_args_is_help=True,
)


def _packaged(method: str, model: str) -> Path:
    from editcollapse.editors.api import hparams_path

    return hparams_path(method, model)


@hparams_app.command("show")
def show(
    method: str = typer.Argument(..., help="editing method (rome, r-rome, memit, alphaedit, ft, ft-l-inf, mend)"),
    model: str = typer.Argument(..., help="model name (see `editcollapse models`; tiny-* share one file)"),
) -> None:
    """Print METHOD's packaged hyperparameters for MODEL as YAML (save, change, pass with --hparams).

    Example: editcollapse hparams show rome smollm2-135m > mine.yaml
    """
    typer.echo(_packaged(method, model).read_text(), nl=False)


@hparams_app.command("path")
def path(method: str = typer.Argument(...), model: str = typer.Argument(...)) -> None:
    """Print where METHOD's packaged hyperparameters for MODEL are.

    Example: editcollapse hparams path memit gpt2-xl
    """
    typer.echo(str(_packaged(method, model)))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(hparams_app, name="hparams")
