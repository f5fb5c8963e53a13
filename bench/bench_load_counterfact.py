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

    wall, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        load = load_cases(args.source)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(
        f"{args.source}: {len(load.cases)} cases, {len(load.errors)} error rows, {len(load.files)} file(s); "
        f"load+validate over {args.repeats} runs: wall median {statistics.median(wall):.3f} s "
        f"(min {min(wall):.3f} s), CPU median {statistics.median(cpu):.3f} s"
    )


if __name__ == "__main__":
    main()
