"""MEMIT (one batch) and FT-L∞ (single edits) on SmolLM2 with geofacts cases: success rates and seconds.

    .venv/bin/python bench/memit_ft_smollm2.py memit --weights 2000 500 100 --samples 200
    .venv/bin/python bench/memit_ft_smollm2.py ft-l-inf --eps 5e-3 5e-4

MEMIT's z vectors do not depend on ``mom2_update_weight``, so a λ sweep optimises them once (the
first λ's time includes them; later ones do not).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from bench_common import METRICS, spread_cases

import editcollapse.editors.memit.editor as memit_module
from editcollapse.datasets import load_cases
from editcollapse.editors.api import get_editor, load_hparams
from editcollapse.evaluation.edit_metrics import measure_cases
from editcollapse.models import load_model


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(sum(row[key] for row in rows) / len(rows), 3) for key in METRICS}


def memoise_z() -> None:
    real, memo = memit_module.optimise_target_vector, {}

    def cached(model, tokenizer, name, prompt, subject, target, templates, settings):
        key = (name, prompt, subject, target, tuple(templates))
        if key not in memo:
            memo[key] = real(model, tokenizer, name, prompt, subject, target, templates, settings)
        return memo[key]

    memit_module.optimise_target_vector = cached


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=["memit", "ft-l-inf"])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--weights", type=float, nargs="*", default=[], help="MEMIT mom2_update_weight values")
    parser.add_argument("--samples", type=int, default=None, help="MEMIT mom2_n_samples override")
    parser.add_argument("--eps", type=float, nargs="*", default=[], help="FT-L∞ norm_constraint values")
    parser.add_argument(
        "--spread",
        action="store_true",
        help="CASES cases spread over all geofacts (cases[::len // CASES]) instead of the first CASES",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model("smollm2-135m", device="cpu")
    if args.spread:
        cases = spread_cases("geofacts", args.cases)
    else:
        cases = load_cases("geofacts", limit=args.cases).cases
    print("pre", summary(measure_cases(lm.model, lm.tokenizer, cases)), flush=True)
    base = replace(load_hparams(args.method, "smollm2-135m"), model_revision=lm.revision)
    if args.method == "memit":
        memoise_z()
        if args.samples:
            base = replace(base, mom2_n_samples=args.samples)
        if base.mom2_adjustment:  # key statistics first, so the batch time below excludes them
            from editcollapse.editors.covariance import hparams_covariance

            for layer in base.layers:
                start = time.perf_counter()
                hparams_covariance(lm.model, lm.tokenizer, base.rewrite_module_tmp.format(layer), base)
                print(
                    f"covariance layer {layer} ({base.mom2_n_samples} texts): {time.perf_counter() - start:.1f} s",
                    flush=True,
                )
        for weight in args.weights or [base.mom2_update_weight]:
            hparams = replace(base, mom2_update_weight=weight)
            start = time.perf_counter()
            delta = get_editor("memit").edit(lm.model, lm.tokenizer, lm.arch, cases, hparams)
            seconds = time.perf_counter() - start
            with delta.applied(lm.model):
                post = summary(measure_cases(lm.model, lm.tokenizer, cases))
            errors = [round(layer["z_error_mean"], 1) for layer in delta.diagnostics["layers"]]
            print(
                f"memit λ={weight:g}: {seconds:.1f} s/batch of {len(cases)} {post} z error per layer {errors} "
                f"→ {delta.diagnostics['z_error_after_mean']:.1f}",
                flush=True,
            )
    else:
        for eps in args.eps or [base.norm_constraint]:
            hparams = replace(base, norm_constraint=eps)
            rows, seconds = [], []
            for case in cases:
                start = time.perf_counter()
                delta = get_editor("ft-l-inf").edit(lm.model, lm.tokenizer, lm.arch, [case], hparams)
                seconds.append(time.perf_counter() - start)
                with delta.applied(lm.model):
                    rows += measure_cases(lm.model, lm.tokenizer, [case])
            print(f"ft-l-inf ε={eps:g}: {sum(seconds) / len(seconds):.2f} s/edit {summary(rows)}", flush=True)


if __name__ == "__main__":
    main()
