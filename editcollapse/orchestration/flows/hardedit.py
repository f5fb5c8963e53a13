"""HardEdit flows (paper §7, Appendix A.6): generate candidates with an LLM, filter them with ROME.

``generate_hardedit_candidates``: prompt a chat model (an OpenAI-compatible endpoint or a local
transformers model) with the Figure 12 prompt, parse and validate every answer, and store each
call's rows in ``hardedit_candidates`` (valid and rejected records, the raw response, the reason
of each rejection). Subjects are unique across every run in the warehouse. A run id names one
set of parameters; running the same command again resumes it (finished calls are skipped).

``filter_hardedit``: run a single-edit sweep (the sweep engine: edit the original model with one
case, measure ME-PPL-50, restore) of the valid candidates on each reference model, keep those
whose perplexity exceeds the threshold, write ``hardedit`` rows and the JSON export.

Both are Prefect flows; ``.fn`` calls the plain function (no Prefect server).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from prefect import flow

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS, is_collapsed
from editcollapse.orchestration.ops.concurrency import gpu_slot
from editcollapse.orchestration.run_context import in_prefect_run, run_logger

GENERATE_METHOD = "generate"
GENERATION_STAGE = "hardedit_generation"
FILTER_STAGE = "hardedit_filter"


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def build_backend(
    backend: str,
    *,
    local_model: str,
    model: str | None,
    base_url: str | None,
    max_requests: int | None,
    max_tokens: int | None,
    requests_per_minute: float | None,
    max_new_tokens: int,
    temperature: float | None,
    seed: int,
    timeout_s: float | None = None,
    max_retries: int | None = None,
    backoff_initial_s: float | None = None,
):
    """``"local"``: a transformers chat model (default the embedded SmolLM2); ``"openai"``: an
    OpenAI-compatible endpoint configured by arguments or ``EDITCOLLAPSE_LLM_*`` variables."""
    from editcollapse.stages.hardedit.backends import Budget, OpenAIChatBackend, OpenAIConfig, TransformersChatBackend

    budget = Budget(max_requests=max_requests, max_tokens=max_tokens)
    if backend == "local":
        from editcollapse.models import load_model

        return TransformersChatBackend(
            load_model(local_model, seed=seed),
            budget=budget,
            max_new_tokens=max_new_tokens,
            temperature=0.7 if temperature is None else temperature,
            seed=seed,
        )
    if backend == "openai":
        config = OpenAIConfig.from_env(
            model=model,
            base_url=base_url,
            max_tokens=max_new_tokens,
            temperature=temperature,
            requests_per_minute=requests_per_minute,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_initial_s=backoff_initial_s,
        )
        return OpenAIChatBackend(config, budget=budget, rng=random.Random(seed))
    raise ValueError(f"unknown backend {backend!r}: use 'local' or 'openai'")


def _valid_subjects(warehouse, run_id: str | None = None) -> list[str]:
    """Valid subjects already in ``hardedit_candidates`` (one run's, or every run's), in order."""
    rows = warehouse.read("hardedit_candidates", run_id=run_id).to_pylist()
    rows.sort(key=lambda r: (r["run_id"], r["call_index"], r["sample_index"]))
    return [r["subject"] for r in rows if r["valid"]]


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
    from editcollapse.stages.hardedit.generate import GenerationSettings, generate, summarise
    from editcollapse.stages.hardedit.prompt import load_seed_examples, load_template
    from editcollapse.stages.hardedit.records import outcome_rows
    from editcollapse.stages.hardedit.subjects import load_subject_repository
    from editcollapse.warehouse import Warehouse, build_catalog
    from editcollapse.warehouse.runs import finish_run, start_run

    log = run_logger(__name__)
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
    previous = _valid_subjects(store) if dedupe_across_runs else _valid_subjects(store, run_id)
    settings = GenerationSettings(
        n_calls=n_calls, subjects_per_prompt=subjects_per_prompt, n_points=n_points, seed=seed
    )
    outcomes = []
    try:
        with gpu_slot(enabled=backend == "local"):  # a local generator occupies the GPU
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
    _artifact("hardedit-generation", summary)
    return summary


def _artifact(key: str, summary: dict[str, Any]) -> None:
    """A Markdown table of ``summary`` in the Prefect UI (skipped outside a flow run: creating one
    there would start a temporary Prefect server)."""
    from prefect.artifacts import create_markdown_artifact

    if not in_prefect_run():
        return
    lines = ["| field | value |", "|---|---|"] + [f"| {k} | {json.dumps(v, default=str)} |" for k, v in summary.items()]
    create_markdown_artifact(markdown="\n".join(lines), key=key)


def load_candidates(warehouse, candidate_run_ids: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
    """Valid candidates (each id once, in generation order), from the given runs or all runs."""
    rows = [
        r
        for r in warehouse.read("hardedit_candidates").to_pylist()
        if r["valid"] and (not candidate_run_ids or r["run_id"] in candidate_run_ids)
    ]
    rows.sort(key=lambda r: (r["run_id"], r["call_index"], r["sample_index"]))
    unique = list({r["candidate_id"]: r for r in reversed(rows)}.values())[::-1]
    return unique[:limit] if limit is not None else unique


def filter_rows(
    candidates: list[dict[str, Any]],
    ppl_rows: list[dict[str, Any]],
    edit_rows: list[dict[str, Any]],
    *,
    run_id: str,
    reference_model: str,
    threshold: float,
) -> list[dict[str, Any]]:
    """``hardedit`` rows: each candidate with its post-edit ME-PPL on one model and whether it is kept
    (perplexity above the threshold or not finite, as in the sweep's ``collapsed``)."""
    ppl = {r["case_id"]: r["ppl_mean"] for r in ppl_rows}
    errors = {r["case_id"]: r.get("error") for r in edit_rows if r.get("status") != "ok"}
    rows = []
    for candidate in candidates:
        cid = candidate["candidate_id"]
        value = ppl.get(cid)
        rows.append(
            {
                "run_id": run_id,
                "candidate_id": cid,
                "candidate_run_id": candidate["run_id"],
                "prompt": candidate["prompt"],
                "subject": candidate["subject"],
                "target_new": candidate["target_new"],
                "ground_truth": candidate["ground_truth"],
                "reference_model": reference_model,
                "ppl_mean": value,
                "kept": value is not None and is_collapsed(value, threshold),
                "threshold": threshold,
                "error": errors.get(cid) or (None if value is not None else "no perplexity measured"),
            }
        )
    return rows


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
    from editcollapse.stages.hardedit.records import candidate_case, export_records, write_export
    from editcollapse.stages.sweep.plan import SweepSpec, resolve_ppl_corpus
    from editcollapse.stages.sweep.run import run_sweep
    from editcollapse.warehouse import Warehouse, build_catalog
    from editcollapse.warehouse.runs import finish_run, start_run

    log = run_logger(__name__)
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
            spec = SweepSpec(
                model=name,
                method=method,
                dataset=f"hardedit-candidates@{candidate_set}",
                shard_size=shard_size,
                ppl_corpus=corpus,
                threshold=threshold,
                seed=seed,
                device=device,
            )
            with gpu_slot():  # one model-editing job per GPU (the `gpu` tag limit)
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
                sweep.get("status"),
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
    _artifact("hardedit-filter", summary)
    return summary
