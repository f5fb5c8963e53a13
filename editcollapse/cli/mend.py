"""`editcollapse mend`: train MEND's editor network for a model, and list the trained ones."""

from __future__ import annotations

from pathlib import Path

import typer

from editcollapse.cli import options
from editcollapse.cli.formatting import cell
from editcollapse.cli.stage import make_config, prefect_defaults, print_json

mend_app = typer.Typer(help="MEND: train the editor network a model's MEND edits use.", no_args_is_help=True)


@mend_app.command("train")
def train(
    model: str = options.model(),
    dataset: str = typer.Option(
        None,
        help="training cases: geofacts (default: the hparams' train_data, the "
        "embedded split), a named source (zsre-train-1k …) or a file",
    ),
    val_dataset: str = typer.Option(None, help="held-out cases (default: a seeded split of --dataset by subject)"),
    max_iters: int = typer.Option(None, help="iterations (default: the hparams'; changes the network's identity)"),
    device: str = options.device(),
    resume: bool = typer.Option(True, help="continue from the last checkpoint (--no-resume: start over)"),
    heldout: int = typer.Option(0, help="after training, edit and measure this many held-out cases"),
    prefect: bool = options.prefect(),
    hparams: Path = options.hparams(),
) -> None:
    """Train (or resume) MEND for MODEL; the network is stored where `get_editor("mend")` finds it.

    Example: editcollapse mend train --model smollm2-135m --max-iters 200 --no-prefect
    """
    from editcollapse.stages.mend.config import MENDTrainConfig

    config = make_config(
        MENDTrainConfig,
        model=model,
        dataset=dataset,
        val_dataset=val_dataset,
        max_iters=max_iters,
        device=device,
        resume=resume,
        heldout=heldout,
        hparams_file=hparams,
    )
    # No warehouse (the network lives in the cache store), so not run_stage: its preflight, then the
    # flow, imported after Prefect's defaults, or the stage function with the bar only (no server, no artifacts).
    config.preflight()
    if prefect:
        prefect_defaults()
        from editcollapse.orchestration.flows.mend import train_mend

        result = train_mend(config=config)
    else:
        from editcollapse.orchestration.progress import ProgressBar
        from editcollapse.stages.mend.run import losses_text, run_training

        with ProgressBar(f"MEND {model}") as bar:
            result = run_training(config, on_iteration=lambda i, total, info: bar.update(i, total, losses_text(info)))
    print_json(result)


@mend_app.command("list")
def list_networks(model: str = options.model(default=None, help="only this model's networks")) -> None:
    """The trained MEND networks in the cache: model, revision, data, hparams hash, iterations, time.

    Example: editcollapse mend list --model smollm2-135m
    """
    from editcollapse.core.paths import cache_dir
    from editcollapse.editors.mend.store import NETWORK_FILE, read_meta

    columns = ("model", "model_revision", "data_id", "hparams_hash", "iterations", "train_time_s", "folder")
    found = 0
    for path in sorted((cache_dir() / "mend").glob(f"*/*/*/*/{NETWORK_FILE}")):
        meta = read_meta(path.parent) or {"folder": str(path.parent)}
        if model is None or meta.get("model") == model:
            if not found:
                typer.echo("\t".join(columns))
            typer.echo("\t".join(cell(meta.get(column)) for column in columns))
            found += 1
    if not found:
        typer.echo(f"no trained MEND networks in {cache_dir() / 'mend'}; train one: editcollapse mend train --model M")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(mend_app, name="mend")
