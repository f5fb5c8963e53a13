"""How many geofacts cases does the unedited model already get right?

For each case, on the edit prompt (and, separately, its paraphrases):
* ``prob``: P(target_true) > P(target_new) by ROME's per-target score (mean token NLL);
* ``greedy``: every target_true token is the argmax under teacher forcing, i.e. greedy decoding
  after the prompt produces target_true (the first tokens of the continuation).
Prints overall, per relation and per prompt shape (subject first or not).

    .venv/bin/python bench/geofacts_pre_edit.py [--model smollm2-135m] [--limit N] [--seed 0] [--no-paraphrases]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=None, help="score a seeded sample of N cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-paraphrases", action="store_true", help="score the edit prompt only")
    args = parser.parse_args()

    from editcollapse.datasets import load_cases
    from editcollapse.evaluation.scoring import score_targets
    from editcollapse.models import load_model

    cases = load_cases("geofacts", seed=args.seed).cases
    if args.limit is not None:
        cases = random.Random(args.seed).sample(cases, args.limit)
    loaded = load_model(args.model, device="cpu")
    start = time.perf_counter()
    pairs, owners = [], []
    for index, case in enumerate(cases):
        paraphrases = () if args.no_paraphrases else case.paraphrase_prompts
        for kind, prompt in [("edit", case.filled_prompt), *(("paraphrase", p) for p in paraphrases)]:
            pairs += [(prompt, case.target_true), (prompt, case.target_new)]
            owners.append((index, kind))
    scores = score_targets(loaded.model, loaded.tokenizer, pairs)
    seconds = time.perf_counter() - start

    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (index, kind), true, new in zip(owners, scores[0::2], scores[1::2], strict=True):
        case = cases[index]
        hit = (float(true.mean_nll < new.mean_nll), float(true.token_accuracy == 1.0))
        groups[kind].append(hit)
        if kind == "edit":
            groups[f"edit relation={case.extra['relation']}"].append(hit)
            groups[f"edit subject_first={case.extra['subject_first']}"].append(hit)
    print(
        f"model {args.model}, {len(cases)} geofacts cases (seed {args.seed}), "
        f"{len(pairs)} scored pairs in {seconds:.1f} s"
    )
    print(f"{'group':40s} {'n':>5s} {'P(true)>P(new)':>15s} {'greedy=true':>12s}")
    for name in sorted(groups, key=lambda g: (not g.startswith("edit"), g != "edit", g)):
        hits = groups[name]
        prob = sum(h[0] for h in hits) / len(hits)
        greedy = sum(h[1] for h in hits) / len(hits)
        print(f"{name:40s} {len(hits):5d} {prob:15.1%} {greedy:12.1%}")


if __name__ == "__main__":
    main()
