"""Time loading + validating all of CounterFact (21,919 cases) from a data root.

    EDITCOLLAPSE_DATA=../shared/data .venv/bin/python bench/bench_load_counterfact.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="counterfact")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from editcollapse.datasets import load_cases

    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        load = load_cases(args.source)
        seconds.append(time.perf_counter() - start)
    print(f"{args.source}: {len(load.cases)} cases, {len(load.errors)} error rows, {len(load.files)} file(s); "
          f"load+validate median {statistics.median(seconds):.3f} s, min {min(seconds):.3f} s "
          f"over {args.repeats} runs")


if __name__ == "__main__":
    main()
