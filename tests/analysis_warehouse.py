"""A warehouse filled by hand with small but real rows of every stage the analysis reads."""

from __future__ import annotations

import math

from editcollapse.warehouse import Warehouse


def fill(store: Warehouse) -> None:
    """Sweep (two models), HardCF, HardEdit, one sequential and one downstream run, one screen."""
    ppl = [12.0, 30.0, 2000.0, float("inf")]
    store.write_part(
        "ppl",
        [
            {
                "run_id": "s1",
                "case_id": f"c{i}",
                "ppl_mean": v,
                "corpus": "test",
                "collapsed": not math.isfinite(v) or v > 1000,
            }
            for i, v in enumerate(ppl)
        ],
        model="m1",
        method="rome",
        run_id="s1",
        shard=0,
    )
    store.write_part(
        "ppl",
        [{"run_id": "s2", "case_id": "c0", "ppl_mean": 50.0, "collapsed": False}],
        model="m2",
        method="memit",
        run_id="s2",
        shard=0,
    )
    store.write_part(
        "runs",
        [{"run_id": "s1", "dataset": "geofacts", "baseline_ppl_mean": 10.0, "threshold": 1000.0}],
        model="m1",
        method="rome",
        run_id="s1",
        shard="run",
    )
    store.write_part(
        "hardcf",
        [{"run_id": "h", "case_id": c, "source_model": "m1", "collapsed": True} for c in ("c2", "c3")],
        model="all-models",
        method="rome",
        run_id="h",
        shard="all",
    )
    store.write_part(
        "hardedit",
        [
            {"run_id": "f", "candidate_id": f"e{i}", "reference_model": "m1", "kept": k}
            for i, k in enumerate([True, False, False])
        ],
        model="m1",
        method="rome",
        run_id="f",
        shard="all",
    )
    steps = []
    for group, values in (("hard", [10.0, 500.0, 5000.0]), ("normal", [10.0, 11.0, 12.0])):
        for step, value in enumerate(values):
            steps.append(
                {
                    "run_id": "q",
                    "group": group,
                    "trial": 0,
                    "step": step,
                    "ppl_mean": value,
                    "collapsed": value > 1000,
                    "cumulative_fro": float(step),
                }
            )
    store.write_part("sequential", steps, model="m1", method="rome", run_id="q", shard="all")
    points = [("baseline", 10.0, 0.60), ("c0", 12.0, 0.58), ("c2", 2000.0, 0.20), ("c3", 9000.0, 0.05)]
    store.write_part(
        "downstream",
        [
            {
                "run_id": "d",
                "edit_ref": ref,
                "task": "lastword",
                "metric": "acc",
                "value": score,
                "ppl_mean": p,
                "n": 10,
            }
            for ref, p, score in points
        ],
        model="m1",
        method="rome",
        run_id="d",
        shard="all",
    )
    screened = [(0.031, 640.0), (0.9, 22.0), (4.5, 4.4), (None, None)]  # (k·u, risk) of the sweep's cases
    store.write_part(
        "screen",
        [
            {
                "run_id": "r1",
                "case_id": f"c{i}",
                "status": "ok" if risk is not None else "invalid",
                "denominator": ku,
                "risk": risk,
                "bos": False,
                "subject_first_token": 0,
            }
            for i, (ku, risk) in enumerate(screened)
        ],
        model="m1",
        method="rome",
        run_id="r1",
        shard=0,
    )
