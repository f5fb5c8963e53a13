"""ROME variants on the same edits: C = I or the key covariance, bare key (ROME) or averaged key (r-ROME).

v* and the keys do not depend on the covariance or on which key the right vector is solved for, so
each case's v* is optimised once per (layer, target settings) and every variant's Delta is built
from it (exactly as :func:`editcollapse.editors.rome.editor.compute_rome_update` builds it), applied and
measured on the original model: efficacy / paraphrase / neighborhood success (``measure_cases``) and,
optionally, the perplexity of a few embedded English texts. One JSON line per (case, variant).

    OMP_NUM_THREADS=1 .venv/bin/python bench/rome_variants.py --layers 4 --cases 20 \\
        --variants rome-I,rome-C,r-rome-I,r-rome-C --mom2-samples 1000 --json rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch
from bench_common import METRICS, mean_of, spread_cases

from editcollapse.core.delta import Delta
from editcollapse.datasets import english_texts
from editcollapse.editors.api import hparams_for
from editcollapse.editors.covariance import hparams_covariance
from editcollapse.editors.rome.context_templates import context_templates
from editcollapse.editors.rome.editor import rank_one_param_delta
from editcollapse.editors.rome.keys import keys_at_templates
from editcollapse.editors.rome.target_vector import optimise_target_vector
from editcollapse.evaluation.edit_metrics import measure_cases
from editcollapse.evaluation.perplexity import perplexity
from editcollapse.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--source", default="geofacts")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--indices", default="", help="comma-separated indices into the spread cases (default: all)")
    parser.add_argument("--layers", default="4")
    parser.add_argument("--variants", default="rome-I,rome-C,r-rome-I,r-rome-C")
    parser.add_argument("--mom2-samples", type=int, default=0, help="override mom2_n_samples")
    parser.add_argument("--set", action="append", default=[], help="hparam override KEY=VALUE (YAML value)")
    parser.add_argument("--ppl-texts", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import yaml

    loaded = load_model(args.model, device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    cases = spread_cases(args.source, args.cases)
    indices = [int(i) for i in args.indices.split(",")] if args.indices else list(range(len(cases)))
    texts = [t for t in english_texts("embedded") if 8 <= len(t.split()) <= 40][: args.ppl_texts]
    chosen = [cases[i] for i in indices]
    pre = measure_cases(model, tokenizer, chosen)
    variants = args.variants.split(",")
    overrides = {item.split("=", 1)[0]: yaml.safe_load(item.split("=", 1)[1]) for item in args.set}
    print(f"{len(chosen)} cases; pre " + ", ".join(f"{k} {mean_of(pre, k):.3f}" for k in METRICS), flush=True)
    for layer in [int(x) for x in args.layers.split(",")]:
        hparams = hparams_for(loaded, "rome").updated({"layers": [layer], **overrides}, source="--set")
        if args.mom2_samples:
            hparams = replace(hparams, mom2_n_samples=args.mom2_samples)
        rewrite_name = hparams.rewrite_module_tmp.format(layer)
        rewrite = model.get_submodule(rewrite_name)
        covariance = None
        if any(v.endswith("-C") for v in variants):
            start = time.perf_counter()
            covariance = hparams_covariance(model, tokenizer, rewrite_name, hparams).double()
            print(
                f"layer {layer}: covariance ({hparams.mom2_n_samples} texts) {time.perf_counter() - start:.1f} s",
                flush=True,
            )
        templates = context_templates(
            model, tokenizer, hparams.context_template_length_params, seed=hparams.context_template_seed
        )
        rows: dict[str, list[dict]] = {v: [] for v in variants}
        for index, case, case_pre in zip(indices, chosen, pre, strict=True):
            start = time.perf_counter()
            keys, outputs, located = keys_at_templates(
                model, tokenizer, rewrite, templates, case.prompt, case.subject, hparams.fact_token
            )
            target = optimise_target_vector(
                model,
                tokenizer,
                hparams.mlp_module_tmp.format(layer),
                case.prompt,
                case.subject,
                case.target_new,
                templates,
                hparams,
            )
            seconds = time.perf_counter() - start
            k_star = keys.mean(0)
            for variant in variants:
                method, metric = variant.rsplit("-", 1)
                direction = k_star.double()
                if metric == "C":
                    direction = torch.linalg.solve(covariance, direction)
                u = (direction / direction.norm()).to(k_star.dtype)
                key, output = (k_star, outputs.mean(0)) if method == "r-rome" else (keys[0], outputs[0])
                right = (target.target - output) / torch.dot(key, u)
                delta = Delta(
                    method=method,
                    params={f"{rewrite_name}.weight": rank_one_param_delta(rewrite, u, right)},
                    hparams_hash=hparams.hash(),
                    case_ids=(case.case_id,),
                )
                with delta.applied(model):
                    (metrics,) = measure_cases(model, tokenizer, [case])
                    ppl = perplexity(model, tokenizer, texts).mean_per_text if texts else float("nan")
                row = {
                    "variant": variant,
                    "layer": layer,
                    "index": index,
                    "case_id": case.case_id,
                    "v_seconds": seconds,
                    "ppl": ppl,
                    **metrics,
                    **{f"pre_{k}": value for k, value in case_pre.items()},
                    "denominator": float(torch.dot(key, u)),
                    "right_norm": float(right.norm()),
                    "lookup_token": located[0].position,
                    "subject_first_token": located[0].subject_span[0],
                    "cos_k_bare_k_star": float(
                        torch.nn.functional.cosine_similarity(keys[0].double(), k_star.double(), dim=0)
                    ),
                    "target_prob": target.target_prob,
                    "v_steps": target.steps,
                    "v_init_norm": float(target.init.norm()),
                    "v_delta_norm": float(target.delta.norm()),
                    "overrides": overrides,
                }
                rows[variant].append(row)
                print(
                    f"  [{index}] {case.case_id} {variant}: eff {metrics['efficacy_success']:.2f} "
                    f"para {metrics['paraphrase_success']:.2f} nb {case_pre['neighborhood_success']:.2f}→"
                    f"{metrics['neighborhood_success']:.2f} ppl {ppl:.0f} k·u {row['denominator']:.2f} "
                    f"‖r‖ {row['right_norm']:.1f} pos {row['lookup_token']} ‖δ‖/‖init‖ "
                    f"{row['v_delta_norm'] / row['v_init_norm']:.2f} p {row['target_prob']:.2f} "
                    f"effmag {metrics['efficacy_magnitude']:.2f} ({seconds:.0f} s)",
                    flush=True,
                )
                if args.json:
                    with open(args.json, "a") as handle:
                        handle.write(json.dumps(row) + "\n")
        for variant in variants:
            print(
                f"layer {layer} {variant}: "
                + ", ".join(f"{k} {mean_of(pre, k):.3f}→{mean_of(rows[variant], k):.3f}" for k in METRICS)
                + f", max ppl {max(r['ppl'] for r in rows[variant]):.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
