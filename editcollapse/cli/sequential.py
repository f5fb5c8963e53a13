"""`editcollapse sequential`: hard vs normal sequential editing until collapse or N edits."""

from __future__ import annotations

from pathlib import Path

import typer

from editcollapse.cli import formatting
from editcollapse.cli.formatting import cell
from editcollapse.cli.hparams import hparams_option
from editcollapse.cli.stage import make_config, run_stage
from editcollapse.core.collapse import COLLAPSE_THRESHOLD
from editcollapse.core.defaults import EMBEDDED_MODEL


def sequential(
    model: str = typer.Option(EMBEDDED_MODEL, help="model name, local folder or hub id"),
    method: str = typer.Option("rome", help="editing method: rome, r-rome, memit, ft, ft-l-inf"),
    hard_source: str = typer.Option("hardcf", help="'hardcf' (warehouse hardcf + ppl tables) or a HardCF file"),
    dataset: str = typer.Option("counterfact", help="cases the hard ids refer to; the normal group's pool"),
    n_edits: int = typer.Option(20, help="edits per trajectory (fewer when it collapses first)"),
    trials: int = typer.Option(3, help="trajectories per group (seeded orderings)"),
    seed: int = typer.Option(0, help="seed of the normal sample and the orderings"),
    ppl_corpus: str = typer.Option("me-ppl-1k", help="perplexity corpus (me-ppl-50|1k|10k, embedded-50|1k, file)"),
    ppl_every: int = typer.Option(1, help="evaluate perplexity and edit success every k edits (and at the last)"),
    threshold: float = typer.Option(COLLAPSE_THRESHOLD, help="collapse threshold on the mean per-sentence perplexity"),
    group_size: int = typer.Option(None, help="cases per group (default n_edits; larger: trials sample from it)"),
    warehouse: Path = typer.Option(
        None, "--warehouse", "-w", help="warehouse root (default $EDITCOLLAPSE_WAREHOUSE or ./warehouse)"
    ),
    run_id: str = typer.Option(None, help="run id (default: a digest of the parameters; same command = resume)"),
    ppl_batch_size: int = typer.Option(16, help="perplexity batch size"),
    extra_corpus: str = typer.Option(
        None,
        help="a second perplexity corpus (e.g. me-ppl-1k), measured every "
        "--extra-every edits, at step 0 and at each trajectory's last step",
    ),
    extra_every: int = typer.Option(10, help="interval of --extra-corpus in edits"),
    sweep_run: str = typer.Option(None, help="hard group from this single-edit sweep run's ppl/hardcf rows only"),
    prefect: bool = typer.Option(True, help="run as a Prefect flow (--no-prefect: plain function)"),
    hparams: Path = hparams_option(),
) -> None:
    """Edit hard and normal cases one after another; record perplexity, edit success and weight change."""
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
        hparams_file=hparams,
    )
    result = run_stage(
        config,
        None if warehouse is None else str(warehouse),
        prefect=prefect,
        flow="editcollapse.orchestration.flows.sequential:sequential_editing",
        plain=_plain_sequential,
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


def _plain_sequential(config, store):
    """The flow's function without Prefect: the same steps, with the per-step log lines."""
    from editcollapse.orchestration.flows.sequential import sequential_editing

    return sequential_editing.fn(config, store.location)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("sequential")(sequential)
