"""The downstream evaluation as a Prefect flow (see :mod:`editcollapse.stages.downstream.pipeline`): each
model a task run, a progress bar and a progress artifact over the models; at the end a table
artifact of every score and a markdown report with the perplexity-vs-score correlations and the plot.
"""

from __future__ import annotations

from prefect import flow

from editcollapse.orchestration.artifacts import png_data_uri, table_rows
from editcollapse.orchestration.progress import ProgressBar, progress_artifact
from editcollapse.orchestration.run_context import run_logger
from editcollapse.stages.downstream.config import DownstreamConfig
from editcollapse.stages.downstream.pipeline import DownstreamResult, run_downstream
from editcollapse.warehouse.store import Warehouse


@flow(name="downstream-eval")
def downstream_eval(config: DownstreamConfig = DownstreamConfig(), warehouse: str | None = None) -> DownstreamResult:
    """Evaluate the unedited ``config.model`` and the edited models ``config.edits`` names on
    ``config.tasks`` (see :func:`editcollapse.stages.downstream.pipeline.run_downstream`); publish artifacts."""
    from editcollapse.orchestration.tasks.downstream import evaluate_ref_task

    config.preflight()  # a mistake fails here, with the command line's message, before any runs row
    artifact = progress_artifact(None, f"downstream evaluation of {config.model}: models evaluated")
    with ProgressBar(f"downstream {config.model}", artifact=artifact) as bar:
        result = run_downstream(
            config, Warehouse(warehouse), evaluate=evaluate_ref_task, log=run_logger(__name__), on_progress=bar.update
        )
    _publish(result)
    run_logger(__name__).info(f"downstream {result.run_id}: {result.headline()}")
    return result


def _publish(result: DownstreamResult) -> None:
    """A table artifact with every score and a markdown artifact with correlations and the plot."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = result.run_id.lower().replace("_", "-")[:80]
    create_table_artifact(
        table_rows(result.rows, drop=("run_id",)),
        key=f"downstream-scores-{key}",
        description="one row per model, task and metric (value, stderr, n, ME-PPL)",
    )
    create_markdown_artifact(
        _markdown(result),
        key=f"downstream-correlation-{key}",
        description="perplexity vs downstream score: Pearson (log10 ppl), Spearman, n",
    )


def _markdown(result: DownstreamResult) -> str:
    lines = ["| task | metric | n | Pearson r (log10 ppl) | p | Spearman ρ | p |", "|---|---|---|---|---|---|---|"]
    lines += [
        f"| {c['task']} | {c['metric']} | {c['n']} | {c['pearson_r']:.3f} | {c['pearson_p']:.3g} | "
        f"{c['spearman_rho']:.3f} | {c['spearman_p']:.3g} |"
        for c in result.correlations
    ]
    for label, entries in (("failed edits", result.failed), ("tasks not reachable", result.unreachable)):
        lines += [f"\n**{label}:**"] + [f"- {name}: {why}" for name, why in entries.items()] if entries else []
    if result.plot:
        lines.append(f"\n![perplexity vs score]({png_data_uri(result.plot)})\n\n`{result.plot}`")
    return "\n".join(lines)
