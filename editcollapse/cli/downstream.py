"""`editcollapse downstream`: lm-eval tasks on the unedited and flagged edited models, and the
correlation of perplexity with each task's score."""

from __future__ import annotations

from pathlib import Path

import typer

from editcollapse.cli import formatting, options
from editcollapse.cli.formatting import cell
from editcollapse.cli.stage import make_config, run_stage
from editcollapse.stages.downstream.config import DownstreamConfig


def downstream(
    model: str = options.model(),
    edits: str = typer.Option(
        "extremes",
        help="none | extremes (k most and k least damaging sweep edits) | "
        "hardcf | hardedit | sequential | comma-separated case ids",
    ),
    tasks: str = typer.Option(
        None,
        help="comma-separated tasks: offline suites (ec_lastword_embedded, "
        "ec_geofacts_mc, ec_mmlu_sub) and/or lm-eval names (piqa, "
        "hellaswag, lambada_openai …); default: the offline suites found here",
    ),
    paper_tasks: bool = typer.Option(
        False,
        "--paper-tasks",
        help="add the paper's lm-eval tasks (their data must be online or in the HuggingFace cache)",
    ),
    limit: int = options.limit("items per task", default=DownstreamConfig.limit),
    all_items: bool = typer.Option(False, "--all-items", help="every item of each task (instead of --limit)"),
    method: str = options.method(help="editing method of the edits (and of their re-run)"),
    k: int = typer.Option(2, help="with --edits extremes: how many most and least damaging edits"),
    max_edits: int = typer.Option(10, help="with hardcf / hardedit / sequential: at most this many"),
    source_run: str = typer.Option(None, help="the sweep or sequential run to take edits from (default: the largest)"),
    ppl_corpus: str = options.ppl_corpus(),
    include_path: Path = typer.Option(None, help="a folder of your own lm-eval task YAMLs"),
    mmlu_file: Path = typer.Option(
        None, help="MMLU JSON for ec_mmlu_sub (default $EDITCOLLAPSE_MMLU or mmlu/mmlu.json under $EDITCOLLAPSE_DATA)"
    ),
    items: int = typer.Option(500, help="items built per offline suite (--limit evaluates the first ones)"),
    batch_size: int = typer.Option(8, help="lm-eval batch size"),
    bootstrap_iters: int = typer.Option(1000, help="bootstrap resamples for perplexity-type stderrs"),
    seed: int = options.seed(help="seed of the offline suites' sampling and of re-run edits"),
    warehouse: str = options.warehouse(),
    run_id: str = options.run_id(),
    device: str = options.device(),
    prefect: bool = options.prefect(),
    hparams: Path = options.hparams(),
) -> None:
    """Evaluate the unedited model and flagged edited models on downstream tasks; correlate with perplexity.

    Example: editcollapse downstream --model smollm2-135m --edits extremes --limit 20 --no-prefect
    """
    from rich.table import Table

    from editcollapse.stages.downstream.catalog import PAPER_TASKS
    from editcollapse.stages.downstream.pipeline import default_tasks

    names = [name.strip() for name in tasks.split(",") if name.strip()] if tasks else default_tasks(mmlu_file)
    if paper_tasks:
        names += [name for name in PAPER_TASKS if name not in names]
    config = make_config(
        DownstreamConfig,
        model=model,
        edits=edits,
        tasks=tuple(names),
        limit=None if all_items else limit,
        method=method,
        k=k,
        max_edits=max_edits,
        source_run=source_run,
        ppl_corpus=ppl_corpus,
        include_path=None if include_path is None else str(include_path),
        mmlu_file=None if mmlu_file is None else str(mmlu_file),
        items=items,
        batch_size=batch_size,
        bootstrap_iters=bootstrap_iters,
        seed=seed,
        run_id=run_id,
        device=device,
        hparams_file=hparams,
    )
    result = run_stage(
        config,
        warehouse,
        prefect=prefect,
        flow="editcollapse.orchestration.flows.downstream:downstream_eval",
        plain="editcollapse.stages.downstream.pipeline:run_downstream",
        progress=f"downstream {model}",
    )
    console = formatting.console()
    scores = Table(title=f"downstream run {result.run_id}")
    for column in ("edit", "ME-PPL", "task", "metric", "value", "stderr", "n"):
        scores.add_column(column)
    for row in sorted(result.rows, key=lambda r: (r["edit_ref"] != "baseline", -r["ppl_mean"], r["task"])):
        scores.add_row(
            row["edit_ref"],
            cell(row["ppl_mean"]),
            row["task"],
            row["metric"],
            cell(row["value"]),
            cell(row["stderr"]),
            str(row["n"]),
        )
    console.print(scores)
    stats = Table(title="perplexity vs score across models (Pearson on log10 ppl)")
    for column in ("task", "metric", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p"):
        stats.add_column(column)
    numbers = ("pearson_r", "pearson_p", "spearman_rho", "spearman_p")
    for line in result.correlations:
        stats.add_row(line["task"], line["metric"], str(line["n"]), *(cell(line[c]) for c in numbers))
    console.print(stats)
    for name, why in {**result.failed, **result.unreachable}.items():
        console.print(f"[yellow]skipped {name}: {why}")
    if result.plot:
        console.print(f"figure: {result.plot}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("downstream")(downstream)
