"""`editcollapse screen`: rank every case's ROME collapse risk from forward passes, without editing."""

from __future__ import annotations

from pathlib import Path

import typer

from editcollapse.cli import options
from editcollapse.cli.stage import make_config, print_json, run_stage
from editcollapse.stages.screen.config import DEFAULT_BATCH, DEFAULT_SHARD_SIZE


def screen(
    model: str = options.model(),
    method: str = options.method(help="rome or r-rome (the methods with one rank-one update to bound)"),
    dataset: str = typer.Option("geofacts", help="case source name (geofacts, counterfact, zsre …) or file"),
    limit: int = options.limit("valid cases"),
    shard_size: int = typer.Option(
        DEFAULT_SHARD_SIZE, min=1, help="cases per shard (the unit of resume and Parquet part)"
    ),
    batch: int = typer.Option(
        DEFAULT_BATCH, min=1, help="cases screened together (their texts run in groups of equal length)"
    ),
    run_id: str = options.run_id(),
    warehouse: str = options.warehouse(),
    seed: int = options.seed(),
    device: str = options.device(),
    prefect: bool = options.prefect(),
    hparams: Path = options.hparams(),
) -> None:
    """Screen: per case, ROME's k·u, key norms, ‖init‖ and the risk bound on ‖ΔW‖, from forward passes only.

    Example: editcollapse screen --model smollm2-135m --method rome --dataset counterfact --no-prefect
    """
    from editcollapse.stages.screen.config import ScreenConfig

    config = make_config(
        ScreenConfig,
        model=model,
        method=method,
        dataset=dataset,
        limit=limit,
        shard_size=shard_size,
        batch=batch,
        run_id=run_id or "",
        seed=seed,
        device=device,
        hparams_file=hparams,
    )
    result = run_stage(
        config,
        warehouse,
        prefect=prefect,
        flow="editcollapse.orchestration.flows.screen:screen_cases_flow",
        plain="editcollapse.stages.screen.run:run_screen",
        progress=f"screen {config.model} · {config.method}",
    )
    print_json(result)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("screen")(screen)
