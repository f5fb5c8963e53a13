"""The HardEdit filter: candidate → EditCase, keep rule, paper-form export, and a real ROME run on
a tiny model through the single-edit sweep engine."""

from __future__ import annotations

import json
import math

import pytest

from editcollapse.orchestration.flows.hardedit import filter_hardedit
from editcollapse.stages.hardedit.candidates import filter_rows, load_candidates
from editcollapse.stages.hardedit.config import FilterConfig
from editcollapse.stages.hardedit.generate import CallOutcome
from editcollapse.stages.hardedit.records import candidate_case, export_records, outcome_rows, ppl_key
from editcollapse.stages.hardedit.runs import run_filter
from editcollapse.stages.hardedit.validate import validate_records
from editcollapse.warehouse import Warehouse

RECORDS = [
    {"prompt": "Nintendo is based in", "subject": "Nintendo", "target_new": "Lisbon", "ground_truth": "Kyoto"},
    {
        "prompt": "The leader of Catholicism is the",
        "subject": "Catholicism",
        "target_new": "Dalai Lama",
        "ground_truth": "Pope",
    },
    {"prompt": "New York is in", "subject": "New York", "target_new": "Asia", "ground_truth": "America"},
]


def store_candidates(warehouse: Warehouse, run_id: str = "gen-test") -> list[dict]:
    outcome = CallOutcome(
        call_index=0,
        subjects_offered=[],
        prompt="p",
        backend="test",
        model="test-llm",
        raw_response="{}",
        verdicts=validate_records(RECORDS, set()),
    )
    rows = outcome_rows(outcome, run_id)
    warehouse.write_part("hardedit_candidates", rows, model="test-llm", method="generate", run_id=run_id, shard=0)
    return rows


def test_candidate_case_and_ppl_key():
    case = candidate_case({"candidate_id": "hardedit:1", "run_id": "r", **RECORDS[1]})
    assert case.prompt == "The leader of {} is the" and case.filled_prompt == RECORDS[1]["prompt"]
    assert (case.target_new, case.target_true, case.subject) == ("Dalai Lama", "Pope", "Catholicism")
    with pytest.raises(ValueError, match="hardedit:2"):
        candidate_case({"candidate_id": "hardedit:2", "run_id": "r", **RECORDS[0], "subject": "Sony"})
    assert ppl_key("gpt2-xl") == "rome_gpt2_xl_ppl" and ppl_key("smollm2-135m") == "rome_smollm2_135m_ppl"


def test_load_candidates_takes_valid_ones_once(tmp_path):
    warehouse = Warehouse(tmp_path)
    store_candidates(warehouse, "gen-a")
    store_candidates(warehouse, "gen-b")  # the same records again: same candidate ids
    candidates = load_candidates(warehouse, None, None)
    assert [c["subject"] for c in candidates] == ["Nintendo", "Catholicism"]
    assert [c["run_id"] for c in candidates] == ["gen-a", "gen-a"]
    assert load_candidates(warehouse, ["gen-b"], 1)[0]["run_id"] == "gen-b"


def test_keep_rule_and_export_across_models():
    candidates = [{"candidate_id": f"c{i}", "run_id": "g", **r} for i, r in enumerate(RECORDS[:2])]
    small = filter_rows(
        candidates,
        [{"case_id": "c0", "ppl_mean": 1500.0}, {"case_id": "c1", "ppl_mean": 40.0}],
        [],
        run_id="f",
        reference_model="gpt2-xl",
        threshold=1000.0,
    )
    large = filter_rows(
        candidates,
        [{"case_id": "c0", "ppl_mean": 20.0}, {"case_id": "c1", "ppl_mean": math.inf}],
        [],
        run_id="f",
        reference_model="gpt-j-6b",
        threshold=1000.0,
    )
    assert [r["kept"] for r in small] == [True, False] and [r["kept"] for r in large] == [False, True]
    missing = filter_rows(
        candidates,
        [],
        [{"case_id": "c0", "status": "error", "error": "boom"}],
        run_id="f",
        reference_model="m",
        threshold=1000.0,
    )
    assert [r["error"] for r in missing] == ["boom", "no perplexity measured"] and not any(r["kept"] for r in missing)
    records = export_records(small + large)
    assert records == [
        {**RECORDS[0], "rome_gpt2_xl_ppl": 1500.0, "rome_gpt_j_6b_ppl": 20.0},
        {**RECORDS[1], "rome_gpt2_xl_ppl": 40.0, "rome_gpt_j_6b_ppl": "inf"},
    ]
    assert list(records[0])[:4] == ["prompt", "target_new", "subject", "ground_truth"]  # the paper's order
    json.dumps(records, allow_nan=False)


def test_filter_config_rejects_bad_values_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="^reference_models must name at least one model"):
        FilterConfig(reference_models=())
    with pytest.raises(ValueError, match="^shard_size must be at least 1"):
        FilterConfig(shard_size=0)
    with pytest.raises(ValueError, match="^limit must be at least 1"):
        FilterConfig(limit=0)
    with pytest.raises(ValueError, match=r"no valid HardEdit candidates .*\(runs: \['gen-x'\]\)"):
        run_filter(FilterConfig(candidate_runs=("gen-x",)), Warehouse(tmp_path))


def test_filter_progress_counts_every_candidate_on_every_model() -> None:
    from editcollapse.stages.hardedit.runs import _pairs_done

    reported: list[tuple[int, int]] = []
    for index in range(2):  # the second model's sweep at 3 of 5 cases comes after the first's 5
        _pairs_done(lambda *pair: reported.append(pair), index, ["gpt2-xl", "gpt-j-6b"], 3, 5)
    assert reported == [(3, 10), (8, 10)]


@pytest.mark.slow
def test_filter_on_tiny_gpt2_with_real_rome(tmp_path, bar_updates):
    warehouse = Warehouse(tmp_path / "wh")
    store_candidates(warehouse)
    corpus = tmp_path / "ppl.json"
    corpus.write_text(
        json.dumps(
            [
                {"Corpus": "test", "Text": "The cat sat on the mat and looked out of the window."},
                {"Corpus": "test", "Text": "Rain fell over the quiet town all night long."},
            ]
        )
    )
    export = tmp_path / "hardedit.json"
    config = FilterConfig(
        reference_models=("tiny-gpt2",), limit=1, ppl_corpus=str(corpus), threshold=0.0, export=str(export)
    )
    summary = filter_hardedit.fn(config=config, warehouse=str(tmp_path / "wh"))
    assert summary.candidates == 1 and summary.kept == 1 and summary.errors == 0
    assert summary.kept_per_model == {"tiny-gpt2": 1} and summary.export == str(export)
    assert summary.headline() == "1 of 1 kept (ppl > 0)"
    assert bar_updates == [(0, 1), (1, 1), (1, 1)]  # the start, the case, the end of its shard
    (row,) = warehouse.read("hardedit").to_pylist()
    assert (row["subject"], row["reference_model"], row["kept"]) == ("Nintendo", "tiny-gpt2", True)
    # the number is the sweep engine's post-edit ME-PPL of a real ROME edit
    edits = warehouse.read("edits", model="tiny-gpt2", method="rome").to_pylist()
    ppl = warehouse.read("ppl", model="tiny-gpt2", method="rome").to_pylist()
    assert [e["status"] for e in edits] == ["ok"] and edits[0]["delta_fro"] > 0
    assert ppl[0]["ppl_mean"] == row["ppl_mean"] and math.isfinite(row["ppl_mean"])
    sweep_run = [r for r in warehouse.read("runs").to_pylist() if r["stage"] == "single_edit_sweep"][0]
    assert row["ppl_mean"] != sweep_run["baseline_ppl_mean"]  # the edit changed the model
    assert json.loads(export.read_text()) == [{**RECORDS[0], "rome_tiny_gpt2_ppl": row["ppl_mean"]}]
    # the export is a HardEdit file the project's loader reads back
    from editcollapse.datasets import load_cases

    (case,) = load_cases(str(export), strict=True).cases
    assert (case.filled_prompt, case.subject, case.target_new, case.target_true) == (
        RECORDS[0]["prompt"],
        "Nintendo",
        "Lisbon",
        "Kyoto",
    )
    assert case.extra["rome_tiny_gpt2_ppl"] == row["ppl_mean"]
