"""The two HardEdit runs over the warehouse (paper §7, Appendix A.6), plain Python.

:func:`run_generation`: prompt a chat model (an OpenAI-compatible endpoint or a local
transformers model) with the Figure 12 prompt, parse and validate every answer, and store each
call's rows in ``hardedit_candidates`` (valid and rejected records, the raw response, the reason
of each rejection). Subjects are unique across every run in the warehouse. A run id names one
set of parameters; running again with the same parameters resumes it (finished calls are skipped).

:func:`run_filter`: run a single-edit sweep (the sweep engine: edit the original model with one
case, measure ME-PPL-50, restore) of the valid candidates on each reference model, keep those
that collapsed it, write ``hardedit`` rows and the JSON export.

Both take their parameters as a config (:mod:`editcollapse.stages.hardedit.config`), record a
``runs`` row and return a typed result. ``gpu`` is a context manager factory held around the work that
occupies the GPU (the Prefect flows pass ``gpu_slot``); ``log`` receives the progress lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

from editcollapse.core.hparams_file import hparams_file_parameters
from editcollapse.stages.hardedit.backends import build_backend
from editcollapse.stages.hardedit.candidates import filter_rows, load_candidates, valid_subjects
from editcollapse.stages.hardedit.config import FilterConfig, GenerationConfig
from editcollapse.stages.hardedit.generate import GenerationSettings, generate, invocation_counts, record_counts
from editcollapse.stages.hardedit.prompt import load_seed_examples, load_template
from editcollapse.stages.hardedit.records import candidate_case, export_records, outcome_rows, write_export
from editcollapse.stages.hardedit.subjects import load_subject_repository
from editcollapse.stages.progress import OnProgress, ignore_progress
from editcollapse.stages.result import StageResult
from editcollapse.warehouse import Warehouse, build_catalog
from editcollapse.warehouse.runs import finish_run, start_run

GENERATE_METHOD = "generate"
GENERATION_STAGE = "hardedit_generation"
FILTER_STAGE = "hardedit_filter"

GpuSlot = Callable[[], AbstractContextManager[Any]]
Log = logging.Logger | logging.LoggerAdapter


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class GenerationResult(StageResult):
    """A generation run: its id and generator, what this invocation spent, and the verdicts on the
    records of the whole run (a resumed run counts the calls stored before it too)."""

    run_id: str
    model: str  # the generator (the local model or the endpoint's model)
    backend: str
    calls: int  # calls made by this invocation (a resumed run skips the stored ones)
    skipped_calls: int  # calls already stored by an earlier invocation of the same run
    failed_calls: int  # calls of the run that yielded no record (request failed for good, no JSON)
    requests: int  # requests sent, retries included
    prompt_tokens: int
    completion_tokens: int
    records_parsed: int
    valid_before_dedupe: int
    unique_valid: int
    rejected_by_reason: dict[str, int]  # check name → records rejected by it, most frequent first
    budget: dict[str, int]  # {"requests": n, "tokens": n} spent

    def headline(self) -> str:
        return f"{self.unique_valid} valid candidates of {self.records_parsed} parsed"


@dataclass(frozen=True)
class FilterResult(StageResult):
    """A filter run: how many candidates were edited and kept, and where the kept ones went."""

    run_id: str
    candidates: int
    ppl_corpus: str
    threshold: float
    kept: int  # candidates kept on any reference model (the export's records)
    errors: int  # candidate × model rows without a measured perplexity
    kept_per_model: dict[str, int]
    export: str

    def headline(self) -> str:
        return f"{self.kept} of {self.candidates} kept (ppl > {self.threshold:g})"


def run_generation(
    config: GenerationConfig,
    warehouse: Warehouse,
    *,
    gpu: GpuSlot = nullcontext,
    log: Log = logging.getLogger(__name__),
    on_progress: OnProgress = ignore_progress,
) -> GenerationResult:
    """Generate HardEdit candidates, store every call's rows; return the run's counts.
    ``on_progress(done, total)`` counts the calls (those a resumed run finds stored count as done)."""
    template = load_template(config.template_file)
    repository = load_subject_repository(config.subjects_file)
    seeds = load_seed_examples(config.seeds_source)
    if len(seeds) > config.n_seeds:
        seeds = random.Random(config.seed).sample(seeds, config.n_seeds)
    chat = build_backend(
        config.backend,
        local_model=config.local_model,
        model=config.model,
        base_url=config.base_url,
        max_requests=config.max_requests,
        max_tokens=config.max_tokens,
        requests_per_minute=config.requests_per_minute,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        backoff_initial_s=config.backoff_initial_s,
    )
    label = config.local_model if config.backend == "local" else chat.config.model
    parameters = {
        "backend": f"{config.backend}:{label}",
        "n_calls": config.n_calls,
        "seed": config.seed,
        "seeds": [s.to_dict() for s in seeds],
        "template_sha": _digest(template),
        "subjects_sha": _digest(repository.to_dict()),
        "subjects_per_prompt": config.subjects_per_prompt,
        "n_points": config.n_points,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "dedupe_across_runs": config.dedupe_across_runs,
    }
    run_id = config.run_id or f"hardedit-gen-{_digest(parameters)}"
    n_calls = config.n_calls
    row = start_run(
        warehouse,
        model=label,
        method=GENERATE_METHOD,
        run_id=run_id,
        stage=GENERATION_STAGE,
        dataset="hardedit",
        parameters=parameters,
        n_shards=n_calls,
    )
    done = {i for i in range(n_calls) if warehouse.has_part("hardedit_candidates", label, GENERATE_METHOD, run_id, i)}
    previous = valid_subjects(warehouse) if config.dedupe_across_runs else valid_subjects(warehouse, run_id)
    settings = GenerationSettings(
        n_calls=n_calls, subjects_per_prompt=config.subjects_per_prompt, n_points=config.n_points, seed=config.seed
    )
    outcomes = []
    on_progress(len(done), n_calls)
    try:
        with gpu() if config.backend == "local" else nullcontext():  # a local generator occupies the GPU
            for outcome in generate(
                chat,
                repository=repository,
                seeds=seeds,
                template=template,
                settings=settings,
                previous_subjects=previous,
                skip=done,
            ):
                warehouse.write_part(
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
                on_progress(len(done) + len(outcomes), n_calls)
    except BaseException:
        finish_run(warehouse, label, GENERATE_METHOD, row, status="failed")
        raise
    stored = warehouse.read("hardedit_candidates", run_id=run_id).to_pylist()
    finish_run(
        warehouse,
        label,
        GENERATE_METHOD,
        row,
        status="completed",
        n_cases=sum(r["valid"] for r in stored),
        n_errors=sum(r["sample_index"] == -1 for r in stored),
    )
    build_catalog(warehouse)
    return GenerationResult(
        run_id=run_id,
        model=label,
        backend=chat.name,
        skipped_calls=len(done),
        budget={"requests": chat.budget.requests, "tokens": chat.budget.tokens},
        **invocation_counts(outcomes),
        **record_counts(stored),
    )


def _pairs_done(on_progress: OnProgress, index: int, models: list[str], done: int, n_cases: int) -> None:
    """The sweep of ``models[index]`` at ``done`` of ``n_cases`` as progress over every (candidate, model)."""
    on_progress(index * n_cases + done, len(models) * n_cases)


def run_filter(
    config: FilterConfig,
    warehouse: Warehouse,
    *,
    gpu: GpuSlot = nullcontext,
    log: Log = logging.getLogger(__name__),
    on_progress: OnProgress = ignore_progress,
) -> FilterResult:
    """Single-edit sweep of the valid candidates on each reference model; keep those that collapsed it.

    Writes ``hardedit`` rows (every candidate, kept or not, per model) and the kept candidates in
    the paper's JSON form to ``config.export`` (default ``<warehouse>/exports/<run id>.json``).
    ``on_progress(done, total)`` counts edited (candidate, model) pairs.
    """
    from editcollapse.datasets import load_ppl_corpus
    from editcollapse.stages.identity import cases_digest, models_identity
    from editcollapse.stages.sweep.plan import SweepConfig, resolve_ppl_corpus
    from editcollapse.stages.sweep.run import run_sweep

    models, method, threshold = list(config.reference_models), config.method, config.threshold
    candidate_runs = list(config.candidate_runs) or None
    candidates = load_candidates(warehouse, candidate_runs, config.limit)
    if not candidates:
        raise ValueError(
            f"no valid HardEdit candidates in {warehouse.root} "
            f"(runs: {candidate_runs or 'all'}): run generate_hardedit_candidates first"
        )
    cases = [candidate_case(c) for c in candidates]
    corpus = resolve_ppl_corpus(config.ppl_corpus)
    candidate_set = _digest(sorted(c["candidate_id"] for c in candidates))
    parameters = {
        "models": models,
        "method": method,
        "candidates": candidate_set,
        "n_candidates": len(cases),
        "ppl_corpus": corpus,
        "threshold": threshold,
        "seed": config.seed,
    }
    parameters |= hparams_file_parameters(config.hparams_file)
    run_id = config.run_id or f"hardedit-filter-{_digest(parameters)}"
    label = "+".join(models)
    identity = models_identity(
        method,
        models,
        hparams_file=config.hparams_file,
        seed=config.seed,
        cases=cases_digest(cases),
        ppl_texts=load_ppl_corpus(corpus).texts,
    )
    row = start_run(
        warehouse,
        model=label,
        method=method,
        run_id=run_id,
        stage=FILTER_STAGE,
        dataset="hardedit",
        parameters=parameters,
        identity=identity,
        n_cases=len(cases),
        ppl_corpus=corpus,
        threshold=threshold,
    )
    all_rows: list[dict[str, Any]] = []
    try:
        for index, name in enumerate(models):
            spec = SweepConfig(
                model=name,
                method=method,
                dataset=f"hardedit-candidates@{candidate_set}",
                shard_size=config.shard_size,
                ppl_corpus=corpus,
                threshold=threshold,
                seed=config.seed,
                device=config.device,
                hparams_file=config.hparams_file,
            )
            with gpu():  # one model-editing job per GPU
                sweep = run_sweep(
                    spec, warehouse, cases=cases, on_progress=partial(_pairs_done, on_progress, index, models)
                )
            rows = filter_rows(
                candidates,
                warehouse.read("ppl", model=name, method=method, run_id=spec.run_id).to_pylist(),
                warehouse.read("edits", model=name, method=method, run_id=spec.run_id).to_pylist(),
                run_id=run_id,
                reference_model=name,
                threshold=threshold,
            )
            warehouse.write_part("hardedit", rows, model=name, method=method, run_id=run_id, shard="all")
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
        finish_run(warehouse, label, method, row, status="failed")
        raise
    records = export_records(all_rows)
    errors = sum(r["error"] is not None for r in all_rows)
    export = write_export(config.export or warehouse.local_dir / "exports" / f"{run_id}.json", records)
    finish_run(warehouse, label, method, row, status="completed", n_collapsed=len(records), n_errors=errors)
    build_catalog(warehouse)
    return FilterResult(
        run_id=run_id,
        candidates=len(cases),
        ppl_corpus=corpus,
        threshold=threshold,
        kept=len(records),
        errors=errors,
        kept_per_model={m: sum(r["kept"] for r in all_rows if r["reference_model"] == m) for m in models},
        export=str(export),
    )
