"""Time loading the embedded SmolLM2-135M: first load (GGUF → fp32 safetensors cache) and warm loads.

    .venv/bin/python bench/bench_model_load.py [--cold]

--cold converts into a fresh temporary cache first (≈ 15–20 s); without it, the existing cache is used.
Each warm load runs in a fresh interpreter-level call of `load_model` (the cache folder is re-read).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="measure the one-off conversion too")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.cold:
        os.environ["EDITCOLLAPSE_CACHE"] = tempfile.mkdtemp(prefix="editcollapse-bench-")

    from editcollapse.models import load_model

    start = time.perf_counter()
    load_model("smollm2-135m", device="cpu")
    first = time.perf_counter() - start
    warm = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        load_model("smollm2-135m", device="cpu")
        warm.append(time.perf_counter() - start)
    label = "first load (conversion)" if args.cold else "first load in this process (cache warm)"
    print(f"{label}: {first:.2f} s")
    print(f"warm loads: median {statistics.median(warm):.2f} s, min {min(warm):.2f} s over {args.repeats}")


if __name__ == "__main__":
    main()
