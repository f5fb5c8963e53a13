"""Choosing the edited models for downstream evaluation from warehouse rows."""

from __future__ import annotations

import math

import pytest

from editcollapse.core.case import EditCase
from editcollapse.stages.downstream.selection import (
    by_case_ids,
    case_from_columns,
    extremes,
    from_hardcf,
    from_hardedit,
    from_sequential,
    select_edits,
)
from editcollapse.warehouse.store import Warehouse


def _case(i: int) -> EditCase:
    return EditCase(
        case_id=f"cf:{i}", dataset="cf", prompt="{} is in", subject=f"S{i}", target_new="X", target_true="Y"
    )


CASES = {f"cf:{i}": _case(i) for i in range(6)}


def test_extremes_takes_most_and_least_damaging_nan_first() -> None:
    rows = [{"case_id": f"cf:{i}", "ppl_mean": p} for i, p in enumerate([50, 2000, math.nan, 30, 400, 45])]
    refs = extremes(rows, CASES, k=2, seed=7)
    assert [r.ref for r in refs] == ["cf:2", "cf:1", "cf:3", "cf:5"]
    assert all(r.case == CASES[r.ref] and r.seed == 7 and r.source_table == "ppl" for r in refs)
    assert len(extremes(rows[:3], CASES, k=2)) == 3  # overlap between the two ends counted once


def test_hardcf_keeps_this_models_collapses_once_each() -> None:
    rows = [
        {"case_id": "cf:1", "source_model": "m", "collapsed": True, "ppl_mean": 5000.0},
        {"case_id": "cf:1", "source_model": "m", "collapsed": True, "ppl_mean": 3000.0},
        {"case_id": "cf:2", "source_model": "other", "collapsed": True, "ppl_mean": 9000.0},
        {
            "case_id": "cf:9",
            "source_model": "m",
            "collapsed": True,
            "ppl_mean": 8000.0,
            "dataset": "cf",
            "prompt": "Paris is in",
            "subject": "Paris",
            "target_new": "Asia",
            "target_true": "Europe",
        },
        {"case_id": "cf:3", "source_model": "m", "collapsed": False, "ppl_mean": 20.0},
    ]
    refs = from_hardcf(rows, "m", limit=10, cases=CASES)
    assert [(r.ref, r.recorded_ppl) for r in refs] == [("cf:9", 8000.0), ("cf:1", 5000.0)]
    assert refs[0].case.prompt == "{} is in" and refs[0].case.subject == "Paris"  # rebuilt from columns


def test_hardedit_ids_and_prompt_template() -> None:
    rows = [
        {
            "candidate_id": "a",
            "kept": True,
            "ppl_mean": 1500.0,
            "prompt": "Apple was founded by",
            "subject": "Apple",
            "target_new": "Bill Gates",
            "ground_truth": "Steve Jobs",
        },
        {
            "candidate_id": "b",
            "kept": False,
            "ppl_mean": 10.0,
            "prompt": "x",
            "subject": "x",
            "target_new": "y",
            "ground_truth": "z",
        },
    ]
    (ref,) = from_hardedit(rows, limit=5)
    assert ref.ref == "hardedit:a" and ref.case.prompt == "{} was founded by"
    with pytest.raises(ValueError, match="does not occur"):
        case_from_columns("c", "d", "no subject here", "Apple", "x", None)


def test_sequential_takes_the_last_good_step_with_all_its_deltas() -> None:
    rows = [
        {"run_id": "r", "group": "hard", "trial": 0, "step": s, "ppl_mean": p, "error": e}
        for s, p, e in [(0, 20.0, None), (1, 90.0, None), (2, 3000.0, None), (3, None, "boom")]
    ]
    rows += [{"run_id": "r", "group": "normal", "trial": 1, "step": 1, "ppl_mean": 25.0, "error": None}]
    refs = from_sequential(rows, lambda run, group, trial, step: f"{run}/{group}{trial}/{step}", limit=5)
    assert [r.ref for r in refs] == ["r/hard-trial000@2", "r/normal-trial001@1"]
    assert refs[0].delta_paths == ("r/hard0/1", "r/hard0/2") and refs[0].case is None


def test_case_ids_must_exist() -> None:
    assert [r.ref for r in by_case_ids(["cf:4", "cf:0"], CASES)] == ["cf:4", "cf:0"]
    with pytest.raises(KeyError, match="cf:99"):
        by_case_ids(["cf:99"], CASES)


def test_select_edits_reads_a_sweep_from_the_warehouse(tmp_path) -> None:
    warehouse = Warehouse(tmp_path)
    cases = [
        {
            "run_id": "s",
            "case_id": c.case_id,
            "dataset": c.dataset,
            "prompt": c.prompt,
            "subject": c.subject,
            "target_new": c.target_new,
            "target_true": c.target_true,
            "extra": "{}",
        }
        for c in CASES.values()
    ]
    warehouse.write_part("cases", cases, model="m", method="rome", run_id="s", shard=0)
    warehouse.write_part(
        "ppl",
        [{"run_id": "s", "case_id": f"cf:{i}", "ppl_mean": 10.0 * (i + 1)} for i in range(6)],
        model="m",
        method="rome",
        run_id="s",
        shard=0,
    )
    warehouse.write_part(
        "runs",
        [{"run_id": "s", "stage": "single_edit_sweep", "parameters": '{"seed": 3}'}],
        model="m",
        method="rome",
        run_id="s",
        shard="run",
    )
    refs = select_edits(warehouse, model="m", method="rome", edits="extremes", k=1)
    assert [(r.ref, r.seed) for r in refs] == [("cf:5", 3), ("cf:0", 3)]
    assert refs[0].case == CASES["cf:5"]
    assert [r.ref for r in select_edits(warehouse, model="m", method="rome", edits="cf:2, cf:1")] == ["cf:2", "cf:1"]
    assert select_edits(warehouse, model="m", method="rome", edits="none") == []
    with pytest.raises(LookupError, match="no single-edit sweep"):
        select_edits(warehouse, model="other", method="rome", edits="extremes")
