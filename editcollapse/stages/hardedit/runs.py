"""The two HardEdit runs over the warehouse (paper §7, Appendix A.6), plain Python.

:func:`run_generation`: prompt a chat model (an OpenAI-compatible endpoint or a local
transformers model) with the Figure 12 prompt, parse and validate every answer, and store each
call's rows in ``hardedit_candidates`` (valid and rejected records, the raw response, the reason
of each rejection). Subjects are unique across every run in the warehouse. A run id names one
set of parameters; running again with the same parameters resumes it (finished calls are skipped).

:func:`run_filter`: run a single-edit sweep (the sweep engine: edit the original model with one
case, measure ME-PPL-50, restore) of the valid candidates on each reference model, keep those
that collapsed it, write ``hardedit`` rows and the JSON export.

Both record a ``runs`` row. ``gpu`` is a context manager factory held around the work that
occupies the GPU (the Prefect flows pass ``gpu_slot``); ``log`` receives the progress lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS
from editcollapse.stages.hardedit.backends import build_backend
from editcollapse.stages.hardedit.candidates import filter_rows, load_candidates, valid_subjects
from editcollapse.stages.hardedit.generate import GenerationSettings, generate, summarise
from editcollapse.stages.hardedit.prompt import load_seed_examples, load_template
from editcollapse.stages.hardedit.records import candidate_case, export_records, outcome_rows, write_export
from editcollapse.stages.hardedit.subjects import load_subject_repository
from editcollapse.warehouse import Warehouse, build_catalog
from editcollapse.warehouse.runs import finish_run, start_run

GENERATE_METHOD = "generate"
GENERATION_STAGE = "hardedit_generation"
FILTER_STAGE = "hardedit_filter"

GpuSlot = Callable[[], AbstractContextManager[Any]]
Log = logging.Logger | logging.LoggerAdapter


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_generation(
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
    gpu: GpuSlot = nullcontext,
    log: Log = logging.getLogger(__name__),
) -> dict[str, Any]:
    """Generate HardEdit candidates; return the run's counts (calls, parsed, valid, unique, rejections)."""
    store = Warehouse(warehouse)
    template = load_template(template_file)
    repository = load_subject_repository(subjects_file)
    seeds = load_seed_examples(seeds_source)
    if len(seeds) > n_seeds:
        seeds = random.Random(seed).sample(seeds, n_seeds)
    chat = build_backend(
        backend,
        local_model=local_model,
        model=model,
        base_url=base_url,
        max_requests=max_requests,
        max_tokens=max_tokens,
        requests_per_minute=requests_per_minute,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        timeout_s=timeout_s,
        max_retries=max_retries,
        backoff_initial_s=backoff_initial_s,
    )
    label = local_model if backend == "local" else chat.config.model
    parameters = {
        "backend": f"{backend}:{label}",
        "n_calls": n_calls,
        "seed": seed,
        "seeds": [s.to_dict() for s in seeds],
        "template_sha": _digest(template),
        "subjects_sha": _digest(repository.to_dict()),
        "subjects_per_prompt": subjects_per_prompt,
        "n_points": n_points,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "dedupe_across_runs": dedupe_across_runs,
    }
    run_id = run_id or f"hardedit-gen-{_digest(parameters)}"
    row = start_run(
        store,
        model=label,
        method=GENERATE_METHOD,
        run_id=run_id,
        stage=GENERATION_STAGE,
        dataset="hardedit",
        parameters=parameters,
        n_shards=n_calls,
    )
    done = {i for i in range(n_calls) if store.has_part("hardedit_candidates", label, GENERATE_METHOD, run_id, i)}
    previous = valid_subjects(store) if dedupe_across_runs else valid_subjects(store, run_id)
    settings = GenerationSettings(
        n_calls=n_calls, subjects_per_prompt=subjects_per_prompt, n_points=n_points, seed=seed
    )
    outcomes = []
    try:
        with gpu() if backend == "local" else nullcontext():  # a local generator occupies the GPU
            for outcome in generate(
                chat,
                repository=repository,
                seeds=seeds,
                template=template,
                settings=settings,
                previous_subjects=previous,
                skip=done,
            ):
                store.write_part(
                    "hardedit_candidates",
                    outcome_rows(outcome, run_id),
                    model=label,
                    method=GENERATE_METHOD,
                    run_id=run_id,
                    shard=outcome.call_index,
                )
                outcomes.append(outcome)
                log.info(
                    "call %d: %d records, %d valid%s",
                    outcome.call_index,
                    len(outcome.verdicts),
                    sum(v.valid for v in outcome.verdicts),
                    f" ({outcome.failure})" if outcome.failure else "",
                )
    except BaseException:
        finish_run(store, label, GENERATE_METHOD, row, status="failed")
        raise
    summary = summarise(outcomes)
    summary.update(
        run_id=run_id,
        model=label,
        backend=chat.name,
        skipped_calls=len(done),
        budget={"requests": chat.budget.requests, "tokens": chat.budget.tokens},
    )
    stored = store.read("hardedit_candidates", run_id=run_id).to_pylist()
    finish_run(
        store,
        label,
        GENERATE_METHOD,
        row,
        status="completed",
        n_cases=sum(r["valid"] for r in stored),
        n_errors=sum(r["sample_index"] == -1 for r in stored),
    )
    build_catalog(store)
    return summary


def run_filter(
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
    gpu: GpuSlot = nullcontext,
    log: Log = logging.getLogger(__name__),
) -> dict[str, Any]:
    """Single-edit sweep of the valid candidates on each reference model; keep those that collapsed it.

    Writes ``hardedit`` rows (every candidate, kept or not, per model) and the kept candidates in
    the paper's JSON form to ``export`` (default ``<warehouse>/exports/<run id>.json``); returns a summary.
    """
    from editcollapse.stages.sweep.plan import SweepConfig, resolve_ppl_corpus
    from editcollapse.stages.sweep.run import run_sweep

    models = reference_models or ["smollm2-135m"]
    store = Warehouse(warehouse)
    candidates = load_candidates(store, candidate_run_ids, limit)
    if not candidates:
        raise ValueError(
            f"no valid HardEdit candidates in {store.root} "
            f"(runs: {candidate_run_ids or 'all'}): run generate_hardedit_candidates first"
        )
    cases = [candidate_case(c) for c in candidates]
    corpus = resolve_ppl_corpus(ppl_corpus)
    candidate_set = _digest(sorted(c["candidate_id"] for c in candidates))
    parameters = {
        "models": models,
        "method": method,
        "candidates": candidate_set,
        "n_candidates": len(cases),
        "ppl_corpus": corpus,
        "threshold": threshold,
        "seed": seed,
    }
    run_id = run_id or f"hardedit-filter-{_digest(parameters)}"
    label = "+".join(models)
    row = start_run(
        store,
        model=label,
        method=method,
        run_id=run_id,
        stage=FILTER_STAGE,
        dataset="hardedit",
        parameters=parameters,
        n_cases=len(cases),
        ppl_corpus=corpus,
        threshold=threshold,
    )
    all_rows: list[dict[str, Any]] = []
    try:
        for name in models:
            spec = SweepConfig(
                model=name,
                method=method,
                dataset=f"hardedit-candidates@{candidate_set}",
                shard_size=shard_size,
                ppl_corpus=corpus,
                threshold=threshold,
                seed=seed,
                device=device,
            )
            with gpu():  # one model-editing job per GPU
                sweep = run_sweep(spec, store, cases=cases)
            rows = filter_rows(
                candidates,
                store.read("ppl", model=name, method=method, run_id=spec.run_id).to_pylist(),
                store.read("edits", model=name, method=method, run_id=spec.run_id).to_pylist(),
                run_id=run_id,
                reference_model=name,
                threshold=threshold,
            )
            store.write_part("hardedit", rows, model=name, method=method, run_id=run_id, shard="all")
            all_rows.extend(rows)
            log.info(
                "%s: sweep %s, %d of %d candidates kept (ppl > %g)",
                name,
                sweep.status,
                sum(r["kept"] for r in rows),
                len(rows),
                threshold,
            )
    except BaseException:
        finish_run(store, label, method, row, status="failed")
        raise
    records = export_records(all_rows)
    summary: dict[str, Any] = {
        "run_id": run_id,
        "candidates": len(cases),
        "ppl_corpus": corpus,
        "threshold": threshold,
        "kept": len(records),
        "errors": sum(r["error"] is not None for r in all_rows),
        "kept_per_model": {m: sum(r["kept"] for r in all_rows if r["reference_model"] == m) for m in models},
    }
    summary["export"] = str(write_export(export or store.local_dir / "exports" / f"{run_id}.json", records))
    finish_run(store, label, method, row, status="completed", n_collapsed=len(records), n_errors=summary["errors"])
    build_catalog(store)
    return summary
