"""HardEdit flows (paper §7, Appendix A.6): generate candidates with an LLM, filter them with ROME.

Thin Prefect wrappers around :mod:`editcollapse.stages.hardedit.runs`:
``generate_hardedit_candidates`` runs :func:`~editcollapse.stages.hardedit.runs.run_generation`,
``filter_hardedit`` runs :func:`~editcollapse.stages.hardedit.runs.run_filter`; each holds a slot
of the ``gpu`` limit around its GPU work, logs to the run logger and publishes its summary as a
markdown artifact. ``.fn`` calls the plain function (no Prefect server).
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS
from editcollapse.orchestration.ops.concurrency import gpu_slot
from editcollapse.orchestration.run_context import in_prefect_run, run_logger
from editcollapse.stages.hardedit.runs import run_filter, run_generation


@flow(name="hardedit-generate")
def generate_hardedit_candidates(
    backend: str = "local",
    n_calls: int = 5,
    *,
    local_model: str = "smollm2-135m",
    model: str | None = None,
    base_url: str | None = None,
    seed: int = 0,
    seeds_source: str = "paper",
    n_seeds: int = 30,
    subjects_file: str | None = None,
    template_file: str | None = None,
    subjects_per_prompt: int = 10,
    n_points: int = 10,
    max_requests: int | None = None,
    max_tokens: int | None = None,
    requests_per_minute: float | None = 20.0,
    max_new_tokens: int = 1024,
    temperature: float | None = None,
    dedupe_across_runs: bool = True,
    run_id: str | None = None,
    warehouse: str | None = None,
    timeout_s: float | None = None,
    max_retries: int | None = None,
    backoff_initial_s: float | None = None,
) -> dict[str, Any]:
    """Generate HardEdit candidates; return the run's counts (calls, parsed, valid, unique, rejections)."""
    summary = run_generation(
        backend,
        n_calls,
        local_model=local_model,
        model=model,
        base_url=base_url,
        seed=seed,
        seeds_source=seeds_source,
        n_seeds=n_seeds,
        subjects_file=subjects_file,
        template_file=template_file,
        subjects_per_prompt=subjects_per_prompt,
        n_points=n_points,
        max_requests=max_requests,
        max_tokens=max_tokens,
        requests_per_minute=requests_per_minute,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        dedupe_across_runs=dedupe_across_runs,
        run_id=run_id,
        warehouse=warehouse,
        timeout_s=timeout_s,
        max_retries=max_retries,
        backoff_initial_s=backoff_initial_s,
        gpu=gpu_slot,
        log=run_logger(__name__),
    )
    _artifact("hardedit-generation", summary)
    return summary


@flow(name="hardedit-filter")
def filter_hardedit(
    reference_models: list[str] | None = None,
    *,
    method: str = "rome",
    candidate_run_ids: list[str] | None = None,
    limit: int | None = None,
    ppl_corpus: str = DEFAULT_PPL_CORPUS,
    threshold: float = COLLAPSE_THRESHOLD,
    shard_size: int = 10,
    seed: int = 0,
    export: str | None = None,
    run_id: str | None = None,
    warehouse: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Single-edit sweep of the valid candidates on each reference model; keep ppl > threshold.

    Writes ``hardedit`` rows (every candidate, kept or not, per model) and the kept candidates in
    the paper's JSON form to ``export`` (default ``<warehouse>/exports/<run id>.json``).
    """
    summary = run_filter(
        reference_models,
        method=method,
        candidate_run_ids=candidate_run_ids,
        limit=limit,
        ppl_corpus=ppl_corpus,
        threshold=threshold,
        shard_size=shard_size,
        seed=seed,
        export=export,
        run_id=run_id,
        warehouse=warehouse,
        device=device,
        gpu=gpu_slot,
        log=run_logger(__name__),
    )
    _artifact("hardedit-filter", summary)
    return summary


def _artifact(key: str, summary: dict[str, Any]) -> None:
    """A Markdown table of ``summary`` in the Prefect UI (skipped outside a flow run: creating one
    there would start a temporary Prefect server)."""
    from prefect.artifacts import create_markdown_artifact

    if not in_prefect_run():
        return
    lines = ["| field | value |", "|---|---|"] + [f"| {k} | {json.dumps(v, default=str)} |" for k, v in summary.items()]
    create_markdown_artifact(markdown="\n".join(lines), key=key)
