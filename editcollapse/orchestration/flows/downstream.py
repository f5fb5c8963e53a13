"""The downstream evaluation as a Prefect flow (see :mod:`editcollapse.stages.downstream.pipeline`): each
model a task run; artifacts: a table of every score and a markdown report with the
perplexity-vs-score correlations and the plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import flow

from editcollapse.core.collapse import DEFAULT_PPL_CORPUS
from editcollapse.orchestration.artifacts import png_data_uri, table_rows


@flow(name="downstream-eval", log_prints=True)
def downstream_eval(
    model: str = "smollm2-135m",
    edits: str = "extremes",
    tasks: Sequence[str] | None = None,
    limit: int | None = 50,
    *,
    method: str = "rome",
    k: int = 2,
    max_edits: int = 10,
    source_run: str | None = None,
    ppl_corpus: str = DEFAULT_PPL_CORPUS,
    include_path: str | None = None,
    mmlu_file: str | None = None,
    items: int = 500,
    batch_size: int = 8,
    bootstrap_iters: int = 1000,
    seed: int = 0,
    run_id: str | None = None,
    warehouse: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate the unedited ``model`` and the edited models ``edits`` names on ``tasks`` (see
    :func:`editcollapse.stages.downstream.pipeline.run_downstream` for the parameters); publish artifacts."""
    from editcollapse.orchestration.tasks.downstream import evaluate_ref_task
    from editcollapse.stages.downstream.pipeline import run_downstream

    summary = run_downstream(
        model,
        edits,
        tasks,
        limit,
        method=method,
        k=k,
        max_edits=max_edits,
        source_run=source_run,
        ppl_corpus=ppl_corpus,
        include_path=include_path,
        mmlu_file=mmlu_file,
        items=items,
        batch_size=batch_size,
        bootstrap_iters=bootstrap_iters,
        seed=seed,
        run_id=run_id,
        warehouse=warehouse,
        device=device,
        evaluate=evaluate_ref_task,
    )
    _publish(summary, summary["run_id"])
    return summary


def _publish(summary: dict[str, Any], run_id: str) -> None:
    """A table artifact with every score and a markdown artifact with correlations and the plot."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = run_id.lower().replace("_", "-")[:80]
    create_table_artifact(
        table_rows(summary["rows"], drop=("run_id",)),
        key=f"downstream-scores-{key}",
        description="one row per model, task and metric (value, stderr, n, ME-PPL)",
    )
    create_markdown_artifact(
        _markdown(summary),
        key=f"downstream-correlation-{key}",
        description="perplexity vs downstream score: Pearson (log10 ppl), Spearman, n",
    )


def _markdown(summary: dict[str, Any]) -> str:
    lines = ["| task | metric | n | Pearson r (log10 ppl) | p | Spearman ρ | p |", "|---|---|---|---|---|---|---|"]
    lines += [
        f"| {c['task']} | {c['metric']} | {c['n']} | {c['pearson_r']:.3f} | {c['pearson_p']:.3g} | "
        f"{c['spearman_rho']:.3f} | {c['spearman_p']:.3g} |"
        for c in summary["correlations"]
    ]
    for label, entries in (("failed edits", summary["failed"]), ("tasks not reachable", summary["unreachable"])):
        lines += [f"\n**{label}:**"] + [f"- {name}: {why}" for name, why in entries.items()] if entries else []
    if summary["plot"]:
        lines.append(f"\n![perplexity vs score]({png_data_uri(summary['plot'])})\n\n`{summary['plot']}`")
    return "\n".join(lines)
