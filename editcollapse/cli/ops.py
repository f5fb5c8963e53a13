"""`editcollapse setup-prefect` (work pool + GPU limit), `editcollapse study` (the whole study as
one flow run) and `editcollapse analyse` (figures and tables of the warehouse)."""

from __future__ import annotations

from pathlib import Path

import typer

from editcollapse.cli import options
from editcollapse.cli.stage import make_config, prefect_defaults, run_stage
from editcollapse.cli.sweep import print_most_damaging
from editcollapse.cli.warehouse import error_line, existing_warehouse
from editcollapse.stages.study import STAGES, DownstreamPart, HardEditPart, SequentialPart, StudyConfig


def setup_prefect(
    pool: str = typer.Option("editcollapse", help="process work pool to create (prefect.yaml's pool)"),
    gpu_limit: int = typer.Option(1, help="how many task runs tagged gpu may run at once"),
) -> None:
    """Create the process work pool (unless it exists) and the `gpu` tag limit; PREFECT_API_URL
    names the server.

    Example: editcollapse setup-prefect --gpu-limit 1 (PREFECT_API_URL=http://127.0.0.1:4200/api)
    """
    from editcollapse.orchestration.ops.setup import setup_server

    done = setup_server(pool, gpu_limit)
    typer.echo(
        f"work pool {done['pool']!r} {'created' if done['pool_created'] else 'already there'}; "
        f"tag {done['tag']!r} limited to {done['limit']} concurrent task run(s)"
    )


def study(
    model: str = options.model(),
    method: str = options.method(),
    dataset: str = typer.Option("geofacts", help="case source (geofacts, counterfact …) or file"),
    limit: int = options.limit("valid cases of the sweep"),
    shard_size: int = typer.Option(10, help="cases per sweep shard"),
    ppl_corpus: str = options.ppl_corpus(),
    threshold: float = options.threshold(),
    seed: int = options.seed(),
    device: str = options.device(),
    run_id: str = typer.Option(
        None, help="run id prefix: each step's run is <run-id>-<step> (default: each stage's digest of its parameters)"
    ),
    warehouse: str = options.warehouse(),
    task_runner: str = options.task_runner(),
    batch: int = options.batch(),
    sequential_edits: int = typer.Option(SequentialPart.n_edits, help="edits per sequential trajectory"),
    sequential_trials: int = typer.Option(SequentialPart.trials, help="trajectories per group (hard, normal)"),
    hardedit_backend: str = typer.Option("local", help="local (offline chat model) or openai (EDITCOLLAPSE_LLM_*)"),
    hardedit_calls: int = typer.Option(HardEditPart.calls, help="HardEdit generation calls"),
    hardedit_max_new_tokens: int = typer.Option(
        HardEditPart.max_new_tokens, min=1, help="completion length cap of each HardEdit generation call"
    ),
    hardedit_limit: int = typer.Option(
        None, min=1, help="first N valid HardEdit candidates the filter edits (at least 1; omit for all)"
    ),
    downstream_limit: int = typer.Option(
        DownstreamPart.limit,
        min=1,
        help=f"first N items per downstream task (at least 1; default {DownstreamPart.limit})",
    ),
    downstream_k: int = typer.Option(
        DownstreamPart.k, min=1, help="the k most and k least damaging edits of the sweep evaluated downstream"
    ),
    stage: list[str] = typer.Option(None, help=f"run only these stages (repeat): {', '.join(STAGES)}"),
    hparams: Path = options.hparams(),
) -> None:
    """The whole study as one Prefect flow run, every stage a subflow (see the UI's run graph).

    Example: editcollapse study --model smollm2-135m --method rome --limit 20 --stage sweep --stage hardcf
    """
    config = make_config(
        StudyConfig,
        model=model,
        method=method,
        dataset=dataset,
        limit=limit,
        shard_size=shard_size,
        ppl_corpus=ppl_corpus,
        threshold=threshold,
        seed=seed,
        device=device,
        batch=batch,
        hparams_file=hparams,
        run_id=run_id,
        stages=tuple(stage or STAGES),
        sequential=make_config(SequentialPart, n_edits=sequential_edits, trials=sequential_trials),
        hardedit=make_config(
            HardEditPart,
            backend=hardedit_backend,
            calls=hardedit_calls,
            max_new_tokens=hardedit_max_new_tokens,
            limit=hardedit_limit,
        ),
        downstream=make_config(DownstreamPart, limit=downstream_limit, k=downstream_k),
    )
    config.preflight()
    prefect_defaults()
    from editcollapse.orchestration.flows.study import editcollapse_study

    state = editcollapse_study(config=config, warehouse=warehouse, task_runner=task_runner, return_state=True)
    if not state.is_completed():
        typer.echo(f"error: {state.message}", err=True)
        raise typer.Exit(1)
    result = state.result()
    for line in result.steps:
        typer.echo(f"{line['step']:18} {line['state']:10} {line['result']}")
    if "sweep" in result.results:
        print_most_damaging(result.results["sweep"])
    if "analysis" in result.results:
        typer.echo(f"report: {result.results['analysis'].html} (open it in a browser)")


def analyse(
    warehouse: str = options.warehouse(),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="folder for PNG/CSV/report.md (default <warehouse>/analysis; a URL warehouse: its local folder)",
    ),
    threshold: float = options.threshold(),
    prefect: bool = options.prefect(),
) -> None:
    """Figures and tables of everything in the warehouse: single-edit perplexity distributions,
    hard cases, sequential curves, downstream-vs-perplexity correlations.

    Example: editcollapse analyse -w warehouse -o analysis --no-prefect
    """
    import duckdb

    from editcollapse.stages.analysis.config import AnalysisConfig

    store = existing_warehouse(warehouse)
    config = make_config(AnalysisConfig, threshold=threshold, output=output)
    try:
        result = run_stage(
            config,
            warehouse,
            prefect=prefect,
            flow="editcollapse.orchestration.flows.analysis:analyse_study",
            plain="editcollapse.stages.analysis.run:run_analysis",
        )
    except duckdb.Error as error:
        typer.echo(f"error: analysis failed: {error_line(error, store)}", err=True)
        raise typer.Exit(2) from None
    for section, rows in result.tables.items():
        typer.echo(f"{section}: {len(rows)} row(s), {len(result.figures.get(section, []))} figure(s)")
    typer.echo(f"report: {result.html} (markdown: {result.report})")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("setup-prefect")(setup_prefect)
    app.command("study")(study)
    app.command("analyse")(analyse)
