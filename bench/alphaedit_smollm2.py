"""AlphaEdit on SmolLM2, single edits of spread geofacts cases: success rates and ME-PPL per null-space setting.

    .venv/bin/python bench/alphaedit_smollm2.py --cases 6 --thresholds 2e-2 5e-3 2e-3 --l2 10 1

Each (nullspace_threshold, L2) pair edits every case alone on the unedited model (the single-edit
sweep's unit) and reports the mean efficacy, paraphrase and neighbourhood success, the mean and
largest ME-PPL of the edited models, the null space's dimension per layer and the share of the
edit's keys that lies in it. The z vectors depend on neither setting, so they are optimised once
per case (the first pair's time includes them; later ones do not). ``--memit`` first edits the same
cases with MEMIT's SmolLM2 file (same layers, targets and z vectors, covariance from as many texts
as AlphaEdit's file reads): the update without the null space, for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
from bench_common import METRICS, spread_cases
from memit_ft_smollm2 import memoise_z

from editcollapse import api
from editcollapse.editors.api import get_editor, load_hparams
from editcollapse.evaluation.edit_metrics import measure_cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[2e-2])
    parser.add_argument("--l2", type=float, nargs="+", default=[10.0])
    parser.add_argument("--corpus", default="me-ppl-50")
    parser.add_argument("--memit", action="store_true", help="also MEMIT's update on the same cases and z")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = api.load_model("smollm2-135m")
    cases = spread_cases("geofacts", args.cases)
    pre = measure_cases(lm.model, lm.tokenizer, cases)
    baseline = api.perplexity(lm, args.corpus).mean_per_text
    print("pre", {key: round(statistics.fmean(row[key] for row in pre), 3) for key in METRICS}, flush=True)
    print(f"unedited ME-PPL ({args.corpus}): {baseline:.2f}", flush=True)
    memoise_z()
    base = replace(load_hparams("alphaedit", "smollm2-135m"), model_revision=lm.revision)

    def single_edits(method: str, hparams) -> tuple[dict[str, float], list[float], list[float], list[list[dict]]]:
        editor = get_editor(method)
        rows, ppls, seconds, layers = [], [], [], []
        for case in cases:
            start = time.perf_counter()
            delta = editor.edit(lm.model, lm.tokenizer, lm.arch, [case], hparams)
            seconds.append(time.perf_counter() - start)
            with delta.applied(lm.model):
                rows += measure_cases(lm.model, lm.tokenizer, [case])
            ppls.append(api.perplexity(lm, args.corpus, delta).mean_per_text)
            layers.append(delta.diagnostics["layers"])
        success = {key: round(statistics.fmean(row[key] for row in rows), 3) for key in METRICS}
        return success, ppls, seconds, layers

    if args.memit:
        memit = replace(
            load_hparams("memit", "smollm2-135m"), model_revision=lm.revision, mom2_n_samples=base.mom2_n_samples
        )
        success, ppls, seconds, _ = single_edits("memit", memit)
        print(
            f"memit λ={memit.mom2_update_weight:g}: {success} ME-PPL mean {statistics.fmean(ppls):.2f} "
            f"max {max(ppls):.2f}; {statistics.fmean(seconds):.1f} s/edit",
            flush=True,
        )
    for threshold in args.thresholds:
        for l2 in args.l2:
            success, ppls, seconds, layers = single_edits(
                "alphaedit", replace(base, nullspace_threshold=threshold, L2=l2)
            )
            null_dims = [layer["null_dim"] for layer in layers[0]]
            in_null = statistics.fmean(layer["key_null_fraction"] for case in layers for layer in case)
            print(
                f"threshold {threshold:g} L2 {l2:g}: {success} ME-PPL mean {statistics.fmean(ppls):.2f} "
                f"max {max(ppls):.2f}; null dims {null_dims}; key share in the null space {in_null:.3f}; "
                f"{statistics.fmean(seconds):.1f} s/edit",
                flush=True,
            )


if __name__ == "__main__":
    main()
