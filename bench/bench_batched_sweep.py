"""Benchmark: the batched single-edit engine against the one-at-a-time loop, same cases, one invocation.

    .venv/bin/python bench/bench_batched_sweep.py --n 64 --batch 10 --threads 1

Each path runs in its own child process (so each peak RSS is its own): the sweep engine's per-case
work (the outcomes of ``editcollapse.stages.sweep.engines.engine_for``'s engine: pre-edit metrics, the
ROME edit, post-edit metrics, ME-PPL perplexity; no warehouse writes) on the first N embedded-default
(geofacts) cases with SmolLM2-135M. Model loading is not timed; one-time set-up (context templates, and for the batched
engine the perplexity corpus' hidden states below the edited layer and C⁻¹) is timed separately
and also reported amortised. Prints cases/s (wall and per CPU-second of the process), the ratio,
peak RSS, and the largest differences between the two paths' numbers (ME-PPL relative, metrics
absolute). ``--flops`` also counts FLOPs per case (torch.utils.flop_counter) on a few cases.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def child_main(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from editcollapse.datasets import load_cases
    from editcollapse.editors.rome.context_templates import context_templates
    from editcollapse.stages.sweep.engines import engine_for
    from editcollapse.stages.sweep.plan import SweepConfig
    from editcollapse.stages.sweep.resources import load_resources

    spec = SweepConfig(
        model=args.model,
        method="rome",
        dataset="geofacts",
        limit=args.n,
        ppl_corpus=args.ppl_corpus,
        batch=args.batch if args.path == "batched" else 1,
        device="cpu",
    ).resolved()
    cases = list(load_cases("geofacts", limit=args.n, seed=0).cases)
    resources = load_resources(spec)
    loaded, hparams = resources.loaded, resources.hparams
    clock = (time.perf_counter(), time.process_time())
    context_templates(
        loaded.model, loaded.tokenizer, hparams.context_template_length_params, seed=hparams.context_template_seed
    )
    engine = engine_for(spec, resources)  # the batched engine prepares C⁻¹ and the perplexity corpus here
    setup = (time.perf_counter() - clock[0], time.process_time() - clock[1])
    if args.flops:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            list(engine.outcomes(cases[: args.n]))
        print(json.dumps({"flops_per_case": counter.get_total_flops() / args.n, "setup_wall": 0}), flush=True)
        return
    print(
        json.dumps(
            {
                "ready": args.path,
                "setup_wall": setup[0],
                "setup_cpu": setup[1],
                "layer": hparams.layers,
                "mom2_adjustment": hparams.mom2_adjustment,
                "ppl_corpus": spec.ppl_corpus,
                "threads": args.threads,
                "batch": spec.batch,
            }
        ),
        flush=True,
    )
    for line in sys.stdin:  # one chunk of cases per line: [start, stop]
        first, stop = json.loads(line)
        start = (time.perf_counter(), time.process_time())
        rows = []
        for outcome in engine.outcomes(cases[first:stop]):
            edit_row = outcome.edit_row
            rows.append(
                {
                    "case_id": outcome.case.case_id,
                    "status": edit_row["status"],
                    "edit_cpu_seconds": edit_row.get("edit_cpu_seconds"),
                    "eval_cpu_seconds": edit_row.get("eval_cpu_seconds"),
                    "v_steps": json.loads(edit_row.get("diagnostics", "{}")).get("v_steps"),
                    "ppl_mean": None if outcome.ppl_row is None else outcome.ppl_row["ppl_mean"],
                    "pre": outcome.pre,
                    "post": outcome.post,
                }
            )
        print(
            json.dumps(
                {
                    "path": args.path,
                    "wall": time.perf_counter() - start[0],
                    "cpu": time.process_time() - start[1],
                    "load": os.getloadavg()[0],
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "rows": rows,
                }
            ),
            flush=True,
        )


class Child:
    """One path's worker process: loads the model once, then computes the chunks it is sent."""

    def __init__(self, args: argparse.Namespace, path: str) -> None:
        command = [
            sys.executable,
            __file__,
            "--child",
            "--path",
            path,
            "--n",
            str(args.n),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
            "--model",
            args.model,
            "--ppl-corpus",
            args.ppl_corpus,
        ] + (["--flops"] if args.flops else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        self.path = path
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.setup = self._read()
        self.chunks: list[dict] = []

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"{self.path} child died (exit {self.process.wait()})")
        return json.loads(line)

    def run(self, first: int, stop: int) -> dict:
        self.process.stdin.write(json.dumps([first, stop]) + "\n")
        self.process.stdin.flush()
        chunk = self._read()
        self.chunks.append(chunk)
        return chunk

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()

    def totals(self) -> dict:
        rows = [row for chunk in self.chunks for row in chunk["rows"]]
        return {
            "path": self.path,
            "n": len(rows),
            "wall": sum(c["wall"] for c in self.chunks),
            "cpu": sum(c["cpu"] for c in self.chunks),
            "setup_wall": self.setup["setup_wall"],
            "setup_cpu": self.setup["setup_cpu"],
            "peak_rss_mib": max(c["peak_rss_mib"] for c in self.chunks),
            "setup": self.setup,
            "rows": rows,
            "chunks": [{k: v for k, v in c.items() if k != "rows"} for c in self.chunks],
        }


def report(totals: dict) -> str:
    return (
        f"{totals['path']}: {totals['n']} cases in {totals['wall']:.1f} s wall / {totals['cpu']:.1f} s CPU "
        f"(+ set-up {totals['setup_wall']:.1f} s wall); {totals['n'] / totals['wall']:.4f} cases/s wall, "
        f"{totals['n'] / totals['cpu']:.4f} cases per CPU-s; peak RSS {totals['peak_rss_mib']:.0f} MiB"
    )


def compare(batched: dict, naive: dict) -> dict:
    ppl, metric = 0.0, 0.0
    for b, n in zip(batched["rows"], naive["rows"], strict=True):
        assert b["case_id"] == n["case_id"] and b["status"] == n["status"], (b["case_id"], n["case_id"])
        if n["ppl_mean"] is not None:
            ppl = max(ppl, abs(b["ppl_mean"] - n["ppl_mean"]) / abs(n["ppl_mean"]))
        for phase in ("pre", "post"):
            assert sorted(b[phase]) == sorted(n[phase])
            metric = max([metric] + [abs(b[phase][k] - n[phase][k]) for k in n[phase]])
    steps = sum(b["v_steps"] != n["v_steps"] for b, n in zip(batched["rows"], naive["rows"], strict=True))
    return {"max_rel_ppl_diff": ppl, "max_abs_metric_diff": metric, "cases_with_other_v_steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ppl-corpus", default="me-ppl-50")
    parser.add_argument("--paths", default="batched,naive", help="which paths, in order")
    parser.add_argument("--chunk", type=int, default=10, help="cases per chunk (a shard); paths alternate per chunk")
    parser.add_argument("--flops", action="store_true", help="count FLOPs per case instead of timing")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    print(f"load average at start: {os.getloadavg()}", flush=True)
    paths = args.paths.split(",")
    if args.flops:
        for path in paths:
            child = Child(args, path)
            print(f"{path}: {child.setup['flops_per_case'] / 1e12:.3f} TFLOP per case", flush=True)
            child.close()
        return
    # the two paths alternate chunk by chunk (a shard of --chunk cases each), so a shared machine's
    # changing load hits both alike, and a run stopped early still compares the same cases
    children = {path: Child(args, path) for path in paths}
    results: dict = {}
    for first in range(0, args.n, args.chunk):
        stop = min(first + args.chunk, args.n)
        for path, child in children.items():
            chunk = child.run(first, stop)
            print(
                f"  cases {first}-{stop - 1} {path}: {chunk['wall']:.1f} s wall, {chunk['cpu']:.1f} s CPU, "
                f"load {chunk['load']:.1f}",
                flush=True,
            )
        results = {path: child.totals() for path, child in children.items()}
        if {"batched", "naive"} <= set(results):
            b, n = results["batched"], results["naive"]
            results["summary"] = {
                "n": b["n"],
                "ratio_wall": n["wall"] / b["wall"],
                "ratio_cpu": n["cpu"] / b["cpu"],
                **compare(b, n),
            }
            print("  so far: " + json.dumps(results["summary"]), flush=True)
        if args.output:
            args.output.write_text(json.dumps(results, indent=1))
    for child in children.values():
        child.close()
    for path in paths:
        print(report(results[path]), flush=True)
    if "summary" in results:
        print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
