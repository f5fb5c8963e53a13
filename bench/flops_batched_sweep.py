"""FLOPs per case of the one-at-a-time loop and of the batched engine (SmolLM2, ROME, geofacts), counted
with torch.utils.flop_counter (matrix products and attention, forward and backward), for the GPU
projection in docs/readme/11-batched.md.

v* is counted at 1 and 2 optimisation steps: a case that takes S steps costs
``edit(1) + S · (edit(2) − edit(1))`` (each step: one forward and one backward pass). Evaluation
(pre/post edit metrics and ME-PPL) is counted once.

    .venv/bin/python bench/flops_batched_sweep.py --n 2
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ppl-corpus", default="me-ppl-50")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from editcollapse.datasets import load_cases, load_ppl_corpus
    from editcollapse.editors.api import get_editor, hparams_for
    from editcollapse.editors.rome.batched import BatchedROME
    from editcollapse.evaluation.batched import CaseScores, EditedForward, PerplexityCorpus, locality_references
    from editcollapse.evaluation.edit_metrics import locality_reference, measure_cases
    from editcollapse.evaluation.perplexity import perplexity
    from editcollapse.models import load_model
    from editcollapse.stages.sweep.plan import resolve_ppl_corpus

    loaded = load_model(args.model, device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    texts = list(load_ppl_corpus(resolve_ppl_corpus(args.ppl_corpus)).texts)
    cases = list(load_cases("geofacts", limit=args.n, seed=0).cases)
    base = hparams_for(loaded, "rome")
    out: dict[str, float] = {}
    from editcollapse.editors.rome.context_templates import context_templates

    context_templates(
        model,
        tokenizer,
        base.context_template_length_params,  # sampled once per run: not counted
        seed=base.context_template_seed,
    )

    def count(function) -> float:
        with FlopCounterMode(display=False) as counter:
            function()
        return counter.get_total_flops() / args.n

    engine = None
    for steps in (1, 2):
        hparams = replace(base, v_num_grad_steps=steps)
        editor = get_editor("rome")
        out[f"naive_edit_{steps}"] = count(
            lambda e=editor, h=hparams: [e.edit(model, tokenizer, loaded.arch, [c], h) for c in cases]
        )
        engine = BatchedROME(model, tokenizer, loaded.arch, hparams)
        out[f"batched_edit_{steps}"] = count(lambda e=engine: e.updates(cases))
    updates = engine.updates(cases)

    def naive_eval() -> None:
        measure_cases(model, tokenizer, cases)
        references = locality_reference(model, tokenizer, cases)
        for case, update, reference in zip(cases, updates, references, strict=True):
            with engine.delta(case, update).applied(model):
                measure_cases(model, tokenizer, [case], reference=[reference])
                perplexity(model, tokenizer, texts, batch_size=16)

    forward = EditedForward(model, tokenizer, loaded.arch, engine.layer, engine.rewrite)
    corpus_flops = count(lambda: PerplexityCorpus(forward, texts)) * args.n  # once per run
    corpus = PerplexityCorpus(forward, texts)

    def batched_eval() -> None:
        scorer = CaseScores(forward, cases)
        references = locality_references(scorer.scores())
        edits = [(u.u, u.right) for u in updates]
        scorer.metrics(edits, [references[i] for i in range(len(cases))])
        corpus.perplexities(edits)

    out["naive_eval"] = count(naive_eval)
    out["batched_eval"] = count(batched_eval)
    out["batched_run_setup"] = corpus_flops
    out["layer"] = base["layers"][0]
    out["n_layers"] = loaded.arch.n_layers
    print(json.dumps(out, indent=1))
    for path in ("naive", "batched"):
        step = out[f"{path}_edit_2"] - out[f"{path}_edit_1"]
        print(
            f"{path}: edit {out[f'{path}_edit_1'] / 1e9:.1f} GFLOP + {step / 1e9:.1f} GFLOP per v* step; "
            f"evaluation {out[f'{path}_eval'] / 1e9:.1f} GFLOP per case; at 24 steps: "
            f"{(out[f'{path}_edit_1'] + 24 * step + out[f'{path}_eval']) / 1e12:.3f} TFLOP per case"
        )


if __name__ == "__main__":
    main()
