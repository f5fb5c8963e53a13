"""The Arrow schema of every warehouse table — the data contract between the study's stages.

Files never hold the partition columns ``model``, ``method`` and ``run``: they come from the
hive path ``<table>/model=<m>/method=<x>/run=<id>/part-<shard>.parquet`` (DuckDB and polars add
them when reading). Every row carries ``run_id`` itself as well, so a row keeps its provenance
when copied out of the tree. Wide, ragged data (diagnostics, parameters) is also kept as JSON
text next to the typed columns, so a new diagnostic never needs a schema change to be stored.
"""

from __future__ import annotations

import pyarrow as pa

PARTITION_COLUMNS = ("model", "method", "run")

_NEIGHBOR = pa.struct([("prompt", pa.string()), ("target", pa.string())])
_PORTABLE = pa.struct([("prompt", pa.string()), ("target_new", pa.string()), ("target_true", pa.string())])
_TIME = pa.timestamp("us", tz="UTC")

RUNS = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("stage", pa.string()),  # "single_edit_sweep", "hardcf", "sequential" …
        ("dataset", pa.string()),
        ("parameters", pa.string()),  # JSON: every parameter that defines the run
        ("identity", pa.string()),  # JSON: what else decides its numbers (hparams hash, input digests …)
        ("versions", pa.string()),  # JSON: package versions of the first attempt (each one's: run_attempts)
        ("git_revision", pa.string()),  # the first attempt's commit, "+dirty" when the tree had changes
        ("model_revision", pa.string()),
        ("hostname", pa.string()),
        ("status", pa.string()),  # "running" | "completed" | "completed_with_errors" | "failed"
        ("started_at", _TIME),
        ("finished_at", _TIME),
        ("attempts", pa.int32()),  # how many times the run was started (resumes count)
        ("n_shards", pa.int32()),
        ("n_cases", pa.int64()),
        ("n_errors", pa.int64()),
        ("n_collapsed", pa.int64()),
        ("ppl_corpus", pa.string()),
        ("baseline_ppl_mean", pa.float64()),  # unedited model, mean of per-sentence perplexities
        ("baseline_ppl_corpus", pa.float64()),  # unedited model, exp(total NLL / total tokens)
        ("threshold", pa.float64()),
    ]
)

RUN_ATTEMPTS = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("attempt", pa.int32(), False),  # 1 for the first start, +1 for each resume
        ("stage", pa.string()),
        ("status", pa.string()),  # the attempt's own end: "running" while it runs (or if it was killed)
        ("git_revision", pa.string()),  # commit hash, "+dirty" when the tree had changes
        ("git_dirty", pa.bool_()),
        ("versions", pa.string()),  # JSON: package versions
        ("hostname", pa.string()),
        ("started_at", _TIME),
        ("finished_at", _TIME),
    ]
)

CASES = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("case_id", pa.string(), False),
        ("shard", pa.int32()),
        ("dataset", pa.string()),
        ("prompt", pa.string()),
        ("subject", pa.string()),
        ("target_new", pa.string()),
        ("target_true", pa.string()),
        ("relation_id", pa.string()),
        ("paraphrase_prompts", pa.list_(pa.string())),
        ("neighborhood", pa.list_(_NEIGHBOR)),
        ("portability", pa.list_(_PORTABLE)),
        ("generation_prompts", pa.list_(pa.string())),
        ("extra", pa.string()),  # JSON
    ]
)

# ROME-family diagnostics promoted to typed columns (keys of the editor's Delta.diagnostics, see
# editcollapse.editors.rome.editor); every diagnostic, these included, is also in the JSON column
# ``diagnostics``. A method that lacks one leaves it NULL.
DIAGNOSTIC_COLUMNS: dict[str, pa.DataType] = {
    "layer": pa.int32(),
    "consistent_keys": pa.bool_(),  # r-ROME (template-averaged key) rather than ROME's bare key
    "denominator": pa.float64(),  # k·u in ROME's right vector: small → huge update
    "right_norm": pa.float64(),  # ‖right vector‖
    "subject_first_token": pa.int32(),  # 0 with no BOS: the subject opens the prompt
    "subject_last_token": pa.int32(),
    "lookup_token": pa.int32(),  # the token whose key is edited
    "prompt_tokens": pa.int32(),
    "bos": pa.bool_(),  # a BOS token precedes the prompt
    "cos_k_bare_k_star": pa.float64(),  # cosine of the bare-prompt key and the averaged k*
    "k_bare_norm": pa.float64(),
    "k_star_norm": pa.float64(),
    "v_init_norm": pa.float64(),
    "v_delta_norm": pa.float64(),
    "target_nll": pa.float64(),  # of target_new after the v* optimisation
    "target_prob": pa.float64(),
    "v_steps": pa.int32(),
    "n_templates": pa.int32(),
}

EDITS = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("case_id", pa.string(), False),
        ("shard", pa.int32()),
        ("status", pa.string()),  # "ok" | "error" (edit/measure failed) | "invalid" (loader)
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("hparams_hash", pa.string()),
        ("edited_params", pa.list_(pa.string())),
        ("delta_fro", pa.float64()),  # ‖ΔW‖_F over all edited parameters (sqrt of sum of squares)
        ("delta_spectral", pa.float64()),  # largest spectral norm among edited parameters
        *[(name, dtype) for name, dtype in DIAGNOSTIC_COLUMNS.items()],
        ("diagnostics", pa.string()),  # JSON: the editor's full diagnostics
        ("edit_seconds", pa.float64()),  # wall clock: computing the Delta
        ("eval_seconds", pa.float64()),  # wall clock: post-edit metrics and perplexity
        ("edit_cpu_seconds", pa.float64()),  # process CPU time (all threads) of the same steps:
        ("eval_cpu_seconds", pa.float64()),  # comparable across runs on a shared machine
    ]
)

SCREEN_KEY_COLUMNS = (
    "layer",
    "consistent_keys",
    "denominator",
    "subject_first_token",
    "subject_last_token",
    "lookup_token",
    "prompt_tokens",
    "bos",
    "cos_k_bare_k_star",
    "k_bare_norm",
    "k_star_norm",
    "v_init_norm",
    "n_templates",
)
"""The diagnostics of a ROME edit that the screen computes too, before editing: same names, same values."""

SCREEN = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("case_id", pa.string(), False),
        ("shard", pa.int32()),
        ("status", pa.string()),  # "ok" | "invalid" (the subject cannot be located; rejected by the loader) | "error"
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("subject", pa.string()),
        ("prompt", pa.string()),  # with {} for the subject
        ("hparams_hash", pa.string()),
        *[(name, DIAGNOSTIC_COLUMNS[name]) for name in SCREEN_KEY_COLUMNS],
        ("output_gap_norm", pa.float64()),  # ‖init − W k‖: 0 for ROME (k is the bare key), r-ROME's offset
        ("risk", pa.float64()),  # upper bound of ‖ΔW‖_F: (output_gap_norm + clamp · v_init_norm) / |denominator|
    ]
)

EDIT_METRICS = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("case_id", pa.string(), False),
        ("shard", pa.int32()),
        ("phase", pa.string()),  # "pre" (unedited model) | "post" (edited)
        ("metric", pa.string()),  # e.g. "efficacy_success", "neighborhood_success"
        ("value", pa.float64()),
    ]
)

PPL = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("case_id", pa.string(), False),
        ("shard", pa.int32()),
        ("corpus", pa.string()),
        ("n_texts", pa.int32()),
        ("ppl_mean", pa.float64()),  # mean of per-sentence perplexities: the paper's number
        ("ppl_corpus", pa.float64()),  # exp(total NLL / total tokens)
        ("ppl_median", pa.float64()),
        ("ppl_max", pa.float64()),
        ("n_nonfinite", pa.int32()),  # sentences whose perplexity is NaN or inf
        ("collapsed", pa.bool_()),  # ppl_mean > threshold, or ppl_mean not finite
        ("threshold", pa.float64()),
        ("ppl_per_text", pa.list_(pa.float64())),
    ]
)

HARDCF = pa.schema(
    [
        ("run_id", pa.string(), False),  # the selection's id
        ("case_id", pa.string(), False),
        ("dataset", pa.string()),
        ("prompt", pa.string()),
        ("subject", pa.string()),
        ("target_new", pa.string()),
        ("target_true", pa.string()),
        ("source_run_id", pa.string()),  # the sweep whose perplexity this row reports
        ("source_model", pa.string()),
        ("source_method", pa.string()),
        ("ppl_mean", pa.float64()),
        ("collapsed", pa.bool_()),  # this model collapsed (a case is selected if any did)
        ("threshold", pa.float64()),
    ]
)

SEQUENTIAL = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("group", pa.string()),  # "hard" | "normal"
        ("trial", pa.int32()),
        ("step", pa.int32()),  # 1 = after the first edit
        ("case_id", pa.string()),
        ("selection", pa.string()),  # "collapsed" | "top_ppl" (filled) | "random"
        ("corpus", pa.string()),
        ("ppl_mean", pa.float64()),
        ("ppl_corpus", pa.float64()),
        ("collapsed", pa.bool_()),
        ("newest_success", pa.float64()),
        ("earlier_success", pa.float64()),
        ("delta_fro", pa.float64()),
        ("delta_spectral", pa.float64()),
        ("cumulative_fro", pa.float64()),
        ("cumulative_spectral", pa.float64()),
        ("norms", pa.string()),  # JSON: per-matrix norms of the step and cumulative change
        ("error", pa.string()),
        ("seconds", pa.float64()),
        # added for issue 8 (additive): what the step files kept beyond the columns above
        ("single_ppl", pa.float64()),  # the case's single-edit ME-PPL (ppl table / HardCF file); NULL unknown
        ("successes", pa.list_(pa.float64())),  # success of every edit so far, in edit order (newest last)
        ("extra_corpus", pa.string()),  # a second perplexity corpus, evaluated every extra_every edits
        ("extra_ppl_mean", pa.float64()),
        ("extra_ppl_corpus", pa.float64()),
        *[(name, dtype) for name, dtype in DIAGNOSTIC_COLUMNS.items()],  # this step's edit (ROME's k·u …)
        ("diagnostics", pa.string()),  # JSON: the editor's full diagnostics of this step's edit
        ("edit_seconds", pa.float64()),  # wall clock: computing the Delta
        ("eval_seconds", pa.float64()),  # wall clock: perplexity(-ies) and edit successes
    ]
)

HARDEDIT_CANDIDATES = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("candidate_id", pa.string(), False),
        ("call_index", pa.int32()),
        ("sample_index", pa.int32()),
        ("backend", pa.string()),
        ("generator", pa.string()),
        ("prompt", pa.string()),
        ("subject", pa.string()),
        ("target_new", pa.string()),
        ("ground_truth", pa.string()),
        ("valid", pa.bool_()),
        ("reject_reason", pa.string()),
        ("raw_response", pa.string()),
    ]
)

HARDEDIT = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("candidate_id", pa.string(), False),
        ("candidate_run_id", pa.string()),
        ("prompt", pa.string()),
        ("subject", pa.string()),
        ("target_new", pa.string()),
        ("ground_truth", pa.string()),
        ("reference_model", pa.string()),
        ("ppl_mean", pa.float64()),
        ("kept", pa.bool_()),
        ("threshold", pa.float64()),
        ("error", pa.string()),
    ]
)

DOWNSTREAM = pa.schema(
    [
        ("run_id", pa.string(), False),
        ("edit_ref", pa.string()),  # "baseline", or the case id / trajectory step of the edit
        ("source_table", pa.string()),  # "hardcf" | "hardedit" | "sequential" | "edits" | "baseline"
        ("task", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("stderr", pa.float64()),
        ("n", pa.int64()),
        ("ppl_mean", pa.float64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "runs": RUNS,
    "run_attempts": RUN_ATTEMPTS,
    "cases": CASES,
    "edits": EDITS,
    "edit_metrics": EDIT_METRICS,
    "ppl": PPL,
    "hardcf": HARDCF,
    "sequential": SEQUENTIAL,
    "hardedit_candidates": HARDEDIT_CANDIDATES,
    "hardedit": HARDEDIT,
    "downstream": DOWNSTREAM,
    "screen": SCREEN,
}


def schema_for(table: str) -> pa.Schema:
    """The schema of ``table``, or a clear error listing the known tables."""
    try:
        return SCHEMAS[table]
    except KeyError:
        raise KeyError(f"unknown warehouse table {table!r}; known: {', '.join(SCHEMAS)}") from None
