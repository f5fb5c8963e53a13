"""Train MEND for SmolLM2 on the embedded default's training split and measure it on held-out cases.

    OMP_NUM_THREADS=1 .venv/bin/python bench/mend_smollm2.py --heldout 100

Trains (or resumes, or reuses) the network of ``editors/mend/hparams/smollm2-135m.yaml`` in the store every
sweep reads (``editcollapse mend train`` does the same), then edits each of ``--heldout`` held-out
cases (subjects never edited in training) one at a time and prints the edit metrics before and
after, as JSON (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from editcollapse.editors.mend.data import load_mend_data
from editcollapse.models import load_model
from editcollapse.stages.mend.run import evaluate_heldout, mend_hparams, train_for_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--heldout", type=int, default=100, help="held-out cases to edit and measure")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the JSON result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device="cpu")
    hparams = mend_hparams(loaded)
    data = load_mend_data(hparams)
    started = time.monotonic()

    def report(iteration: int, total: int, info: dict[str, float]) -> None:
        if iteration % 10 == 0 or iteration == total:
            print(
                f"[{time.monotonic() - started:7.1f}s] iteration {iteration}/{total} "
                + " ".join(f"{k}={v:.4g}" for k, v in info.items()),
                flush=True,
            )

    summary = train_for_model(loaded, hparams, data=data, on_iteration=report)
    print(json.dumps({k: v for k, v in summary.items() if k != "hparams"}, indent=1), flush=True)
    cases = list(data.val)
    random.Random(1).shuffle(cases)
    result = evaluate_heldout(loaded, hparams, cases[: args.heldout])
    result.update(train=summary, threads=args.threads)
    print(json.dumps(result, indent=1, default=str), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
