"""Time ME-PPL perplexity of a model per batch size, and print its mean per-sentence and corpus ppl.

    EDITCOLLAPSE_DATA=../shared/data .venv/bin/python bench/bench_perplexity.py \
        [--corpus me-ppl-50] [--model smollm2-135m] [--batch-sizes 1 4 8 16 50] [--repeats 5] [--threads N]

The corpus is a ``load_ppl_corpus`` name or a JSON file path. Each (batch size, repeat) is one
full pass over the corpus; the first pass (warm-up) is not timed. The CPU is often shared, so the
best (min) and the median wall time are printed, and the process CPU time: with ``--threads 1``
that is close to the wall time the pass would take on an otherwise idle core.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="me-ppl-50")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 50])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    from editcollapse.datasets import load_ppl_corpus
    from editcollapse.evaluation.perplexity import perplexity
    from editcollapse.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_ppl_corpus(args.corpus)
    loaded = load_model(args.model, device="cpu")
    result = perplexity(loaded.model, loaded.tokenizer, corpus.texts)  # warm-up, and the numbers
    print(
        f"{args.model} on {corpus.name} ({len(corpus.texts)} texts, {result.n_tokens} scored tokens, "
        f"{torch.get_num_threads()} threads): mean per-sentence ppl {result.mean_per_text:.4f}, "
        f"corpus ppl {result.corpus:.4f}"
    )
    for batch_size in args.batch_sizes:
        seconds, cpu_seconds = [], []
        for _ in range(args.repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            again = perplexity(loaded.model, loaded.tokenizer, corpus.texts, batch_size=batch_size)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
        drift = abs(again.mean_per_text - result.mean_per_text) / result.mean_per_text
        print(
            f"batch {batch_size:>3}: best {min(seconds):6.2f} s, median {statistics.median(seconds):6.2f} s "
            f"(CPU best {min(cpu_seconds):6.2f} s) over {args.repeats} passes "
            f"(mean ppl relative drift vs the default batch size: {drift:.1e})"
        )


if __name__ == "__main__":
    main()
