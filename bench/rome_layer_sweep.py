"""Layer sweep for ROME: which layer of a model gives edits that work, generalise and stay local.

For each layer, every chosen case is edited alone (the original model each time) and measured with
the CounterFact metrics (efficacy / paraphrase / neighborhood success), plus the perplexity of a few
plain English texts to flag collapse. The layer with the best paraphrase success at unchanged
neighborhood is ROME's choice (the ROME paper picks its layer from causal traces and this same
trade-off).

    .venv/bin/python bench/rome_layer_sweep.py --model smollm2-135m --layers 2,4,6,9,12 --cases 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch
from bench_common import METRICS, mean_of, spread_cases

from editcollapse.datasets import english_texts
from editcollapse.editors.api import get_editor, hparams_for
from editcollapse.evaluation.edit_metrics import measure_cases
from editcollapse.evaluation.perplexity import perplexity
from editcollapse.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="rome")
    parser.add_argument("--layers", default="2,4,6,9,12")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--start", type=int, default=0, help="skip the first START of the spread cases")
    parser.add_argument("--take", type=int, default=0, help="edit only TAKE of the spread cases (0: all)")
    parser.add_argument("--source", default="geofacts")
    parser.add_argument("--ppl-texts", type=int, default=10, help="English texts for the collapse check (0: off)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--json", default="", help="append per-edit rows to this file (JSON lines, as they come)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_model(args.model, device="cpu")
    cases = spread_cases(args.source, args.cases)[args.start :][: args.take or None]
    texts = [text for text in english_texts("embedded") if 8 <= len(text.split()) <= 40][: args.ppl_texts]
    pre = measure_cases(loaded.model, loaded.tokenizer, cases)
    pre_ppl = perplexity(loaded.model, loaded.tokenizer, texts).mean_per_text if texts else float("nan")
    print(
        f"{args.model}: {len(cases)} {args.source} cases; pre-edit "
        + ", ".join(f"{key} {mean_of(pre, key):.3f}" for key in METRICS)
        + f", ppl {pre_ppl:.1f}"
    )
    editor = get_editor(args.method)
    print("| layer | efficacy | paraphrase | neighborhood | max ppl | median ‖ΔW‖ | s/edit |")
    print("|---|---|---|---|---|---|---|")
    for layer in [int(item) for item in args.layers.split(",")]:
        hparams = replace(hparams_for(loaded, args.method), layers=(layer,))
        layer_rows = []
        for case, case_pre in zip(cases, pre, strict=True):
            start = time.perf_counter()
            delta = editor.edit(loaded.model, loaded.tokenizer, loaded.arch, [case], hparams)
            seconds = time.perf_counter() - start
            with delta.applied(loaded.model):
                (metrics,) = measure_cases(loaded.model, loaded.tokenizer, [case])
                ppl = perplexity(loaded.model, loaded.tokenizer, texts).mean_per_text if texts else float("nan")
            row = {
                "layer": layer,
                "case_id": case.case_id,
                "seconds": seconds,
                "ppl": ppl,
                **metrics,
                **{f"pre_{key}": value for key, value in case_pre.items()},
                **delta.diagnostics,
            }
            layer_rows.append(row)
            if args.json:
                with open(args.json, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
        print(
            f"| {layer} | "
            + " | ".join(f"{mean_of(layer_rows, key):.3f}" for key in METRICS)
            + f" | {max(row['ppl'] for row in layer_rows):.1f}"
            + f" | {statistics.median(row['delta_fro'] for row in layer_rows):.2f}"
            + f" | {mean_of(layer_rows, 'seconds'):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
