"""`editcollapse sequential`: hard vs normal sequential editing until collapse or N edits."""

from __future__ import annotations

from pathlib import Path

import typer

from editcollapse.cli import formatting, options
from editcollapse.cli.formatting import cell
from editcollapse.cli.stage import make_config, run_stage


def sequential(
    model: str = options.model(),
    method: str = options.method(),
    hard_source: str = typer.Option("hardcf", help="'hardcf' (warehouse hardcf + ppl tables) or a HardCF file"),
    dataset: str = typer.Option("counterfact", help="cases the hard ids refer to; the normal group's pool"),
    n_edits: int = typer.Option(20, help="edits per trajectory (fewer when it collapses first)"),
    trials: int = typer.Option(3, help="trajectories per group (seeded orderings)"),
    seed: int = options.seed(help="seed of the normal sample and the orderings"),
    ppl_corpus: str = options.ppl_corpus("me-ppl-1k"),
    ppl_every: int = typer.Option(1, help="evaluate perplexity and edit success every k edits (and at the last)"),
    threshold: float = options.threshold(help="collapse threshold on the mean per-sentence perplexity"),
    group_size: int = typer.Option(None, help="cases per group (default n_edits; larger: trials sample from it)"),
    warehouse: str = options.warehouse(),
    run_id: str = options.run_id(),
    ppl_batch_size: int = typer.Option(16, help="perplexity batch size"),
    device: str = options.device(),
    extra_corpus: str = typer.Option(
        None,
        help="a second perplexity corpus (e.g. me-ppl-1k), measured every "
        "--extra-every edits, at step 0 and at each trajectory's last step",
    ),
    extra_every: int = typer.Option(10, help="interval of --extra-corpus in edits"),
    sweep_run: str = typer.Option(None, help="hard group from this single-edit sweep run's ppl/hardcf rows only"),
    prefect: bool = options.prefect(),
    hparams: Path = options.hparams(),
) -> None:
    """Edit hard and normal cases one after another; record perplexity, edit success and weight change.

    Example: editcollapse sequential --model smollm2-135m --method rome --n-edits 10 --trials 2 --no-prefect
    """
    from rich.table import Table

    from editcollapse.stages.sequential.config import SequentialConfig

    config = make_config(
        SequentialConfig,
        model=model,
        method=method,
        hard_source=hard_source,
        dataset=dataset,
        n_edits=n_edits,
        trials=trials,
        seed=seed,
        ppl_corpus=ppl_corpus,
        ppl_every=ppl_every,
        threshold=threshold,
        group_size=group_size,
        extra_corpus=extra_corpus,
        extra_every=extra_every,
        sweep_run=sweep_run,
        run_id=run_id,
        ppl_batch_size=ppl_batch_size,
        device=device,
        hparams_file=hparams,
    )
    result = run_stage(
        config,
        warehouse,
        prefect=prefect,
        flow="editcollapse.orchestration.flows.sequential:sequential_editing",
        plain="editcollapse.cli.sequential:plain_sequential",
    )
    table = Table(title=f"sequential run {result.run_id}")
    columns = (
        "group",
        "trial",
        "edits",
        "baseline_ppl",
        "final_ppl",
        "collapsed_at",
        "final_all_success",
        "cumulative_fro",
        "cumulative_spectral",
        "errors",
    )
    if extra_corpus is not None:
        columns = (*columns[:5], "baseline_extra_ppl", "final_extra_ppl", *columns[5:])
    for column in columns:
        table.add_column(column)
    for line in result.summary:
        table.add_row(*(cell(line[column]) for column in columns))
    console = formatting.console()
    console.print(table)
    for figure in result.plots:
        console.print(f"figure: {figure}")


def plain_sequential(config, store):
    """The flow's function without Prefect: the same steps, with the per-step log lines."""
    from editcollapse.orchestration.flows.sequential import sequential_editing

    return sequential_editing.fn(config, store.location)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("sequential")(sequential)
