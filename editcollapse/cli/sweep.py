"""`editcollapse sweep` (single-edit sweep) and `editcollapse hardcf` (HardCF selection)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from editcollapse.cli import formatting, options
from editcollapse.cli.stage import make_config, print_json, run_stage
from editcollapse.cli.warehouse import existing_warehouse

if TYPE_CHECKING:
    from editcollapse.stages.sweep.summary import SweepResult


def sweep(
    model: str = options.model(),
    method: str = options.method(),
    dataset: str = typer.Option("geofacts", help="case source name (geofacts, counterfact, zsre …) or file"),
    limit: int = options.limit("valid cases"),
    shard_size: int = typer.Option(10, help="cases per shard (the unit of work, resume and Parquet part)"),
    ppl_corpus: str = options.ppl_corpus(),
    run_id: str = options.run_id(),
    warehouse: str = options.warehouse(),
    threshold: float = options.threshold(),
    seed: int = options.seed(),
    device: str = options.device(),
    prefect: bool = options.prefect(),
    batch: int = options.batch(),
    task_runner: str = options.task_runner(),
    retry_errors: bool = typer.Option(
        False, "--retry-errors", help="compute again the cases the run stored as errors (after fixing their cause)"
    ),
    hparams: Path = options.hparams(),
    screen_run: str = typer.Option(
        None, help="sweep only cases of this screen run (`editcollapse screen`), riskiest first by --top/--select"
    ),
    top: int = typer.Option(None, min=1, help="with --screen-run: the N cases of highest risk"),
    select: str = typer.Option(
        None, help='with --screen-run: a SQL condition over the screen table, e.g. "bos = false AND risk > 500"'
    ),
) -> None:
    """Single-edit sweep: edit the original model with each case, measure, keep every row.

    Example: editcollapse sweep --model smollm2-135m --method rome --limit 20 --no-prefect
    """
    from editcollapse.stages.sweep.plan import SweepConfig

    if not prefect and task_runner != "local":
        raise typer.BadParameter("--task-runner needs the Prefect flow (drop --no-prefect)", param_hint="--task-runner")
    config = make_config(
        SweepConfig,
        model=model,
        method=method,
        dataset=dataset,
        limit=limit,
        shard_size=shard_size,
        ppl_corpus=ppl_corpus,
        run_id=run_id or "",
        threshold=threshold,
        seed=seed,
        device=device,
        batch=batch,
        retry_errors=retry_errors,
        hparams_file=hparams,
        screen_run=screen_run,
        top=top,
        select=select,
    )

    flow_options = {"task_runner": task_runner} if prefect else {}
    result = run_stage(
        config,
        warehouse,
        prefect=prefect,
        flow="editcollapse.orchestration.flows.sweep:single_edit_sweep",
        plain="editcollapse.stages.sweep.run:run_sweep",
        progress=f"sweep {config.model} · {config.method}",
        **flow_options,
    )
    _print_summary(result)


def _print_summary(result: SweepResult) -> None:
    console = formatting.console()
    console.print(
        f"run [bold]{result.run_id}[/bold] ({result.model} / {result.method}): "
        f"{result.n_cases} cases, {result.n_errors} errors, {result.n_invalid} invalid "
        f"records, {result.n_collapsed} collapsed (ME-PPL > {result.threshold:g} or NaN/inf); "
        f"unedited ME-PPL {result.baseline_ppl_mean:.4g}"
    )
    if result.status == "completed_with_errors":
        console.print(
            f"{result.n_errors} cases failed (the edits table's error column says why): after fixing the cause, "
            "the same command with --retry-errors computes them again"
        )
    print_most_damaging(result)


def print_most_damaging(result: SweepResult) -> None:
    """The sweep's most damaging edits, worst first, as a table (the sweep's and the study's last words)."""
    from rich.table import Table

    table = Table(title=f"most damaging edits of {result.model} / {result.method} (run {result.run_id})")
    for column in ("case_id", "ME-PPL", "subject", "target_new", "prompt"):
        table.add_column(column)
    for edit in result.most_damaging:
        table.add_row(edit["case_id"], f"{edit['ppl_mean']:.4g}", edit["subject"], edit["target_new"], edit["prompt"])
    formatting.console().print(table)


def hardcf(
    threshold: float = options.threshold(),
    method: str = options.method(help="the editing method whose sweeps to read"),
    model: list[str] = typer.Option(None, "--model", help="only sweeps of this model (repeat for several)"),
    run: list[str] = typer.Option(None, "--run", help="only this sweep run id (repeat for several)"),
    dataset: str = typer.Option(None, help="only cases of this dataset"),
    warehouse: str = options.warehouse(),
    output: Path = typer.Option(None, "--output", "-o", help="JSON export (default <warehouse>/exports/<id>.json)"),
    prefect: bool = options.prefect(),
) -> None:
    """HardCF: cases whose single edit collapsed any model, stored and exported as JSON.

    Example: editcollapse hardcf --method rome -w warehouse --no-prefect
    """
    from editcollapse.stages.hardcf.config import HardCFConfig

    config = make_config(
        HardCFConfig,
        threshold=threshold,
        method=method,
        models=tuple(model or ()),
        runs=tuple(run or ()),
        dataset=dataset,
        output=str(output) if output else None,
    )
    existing_warehouse(warehouse)  # a read: never makes an empty warehouse
    result = run_stage(
        config,
        warehouse,
        prefect=prefect,
        flow="editcollapse.orchestration.flows.hardcf:select_hardcf",
        plain="editcollapse.stages.hardcf.select:run_selection",
    )
    print_json(result)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("sweep")(sweep)
    app.command("hardcf")(hardcf)
