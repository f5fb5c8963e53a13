"""Time the screen (editcollapse screen) on the first N cases of a case source: wall and CPU per case.

EDITCOLLAPSE_DATA=/work/shared/data nice -n 10 .venv/bin/python bench/bench_screen.py --limit 200

Runs the stage itself (run_screen) into a fresh temporary warehouse and reads the time at every
progress report: the set-up (model load, context templates, key covariance, first batch) is reported
apart from the steady per-case cost, which is what a full screen pays per case. Prints one line per
measure and the projection to --project cases (CounterFact: 21,919).
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="rome")
    parser.add_argument("--dataset", default="counterfact")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--project", type=int, default=21_919, help="cases to project the full cost to")
    args = parser.parse_args()

    from editcollapse.stages.screen.config import ScreenConfig
    from editcollapse.stages.screen.run import run_screen
    from editcollapse.warehouse import Warehouse

    marks: list[tuple[int, float, float]] = []  # (cases done, wall, CPU) at each progress report
    config = ScreenConfig(
        model=args.model, method=args.method, dataset=args.dataset, limit=args.limit, batch=args.batch
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as root:
        result = run_screen(
            config,
            Warehouse(root),
            on_progress=lambda done, total: marks.append((done, time.perf_counter(), time.process_time())),
        )
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    first = next(mark for mark in marks if mark[0] > 0)  # after the first batch: set-up done
    last = marks[-1]
    steady = last[0] - first[0]
    print(f"{result.headline()}")
    print(f"total: {wall:.1f} s wall, {cpu:.1f} s CPU for {result.n_cases} cases (batch {args.batch})")
    print(f"set-up + first batch of {first[0]}: {first[1] - start:.1f} s wall, {first[2] - start_cpu:.1f} s CPU")
    if steady > 0:
        per_wall, per_cpu = (last[1] - first[1]) / steady, (last[2] - first[2]) / steady
        print(f"steady: {1000 * per_wall:.1f} ms wall, {1000 * per_cpu:.1f} ms CPU per case over {steady} cases")
        print(f"projected to {args.project} cases: {per_wall * args.project / 60:.1f} min wall (+ set-up)")


if __name__ == "__main__":
    main()
