"""Downstream evaluation: offline suites, the lm-eval runner on a tiny model, correlations, plot."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import yaml

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta, ParamDelta
from editcollapse.models import load_model
from editcollapse.stages.downstream import correlation
from editcollapse.stages.downstream.catalog import build_local_tasks
from editcollapse.stages.downstream.runner import (
    MODEL_OBJECT_NOTES,
    evaluate_model,
    load_tasks,
    scores_from_results,
    task_manager_for,
)
from editcollapse.stages.downstream.suites import (
    SuiteDataError,
    geofacts_mc_task,
    lastword_task,
    mmlu_task,
    read_mmlu,
    write_suite,
)

TEXTS = [
    f"Sentence number {i} tells of the old mill by the river and the {w}."
    for i, w in enumerate(
        ["miller", "water", "stones", "wheel", "flour", "bread", "farmer", "horse", "cart", "road", "town", "market"]
    )
]


def _case(i: int, subject: str, true: str, new: str, relation: str = "P36") -> EditCase:
    return EditCase(
        case_id=f"geo:{i}",
        dataset="geofacts",
        prompt="The capital of {} is",
        subject=subject,
        target_new=new,
        target_true=true,
        relation_id=relation,
    )


CASES = [
    _case(0, "France", "Paris", "Rome"),
    _case(1, "Italy", "Rome", "Berlin"),
    _case(2, "Germany", "Berlin", "Madrid"),
    _case(3, "Spain", "Madrid", "Paris"),
    _case(4, "Spain", "Madrid", "Lisbon"),  # same fact again: one item only
    _case(5, "Peru", "Lima", "Quito", relation="P999"),
]  # a relation with too few objects


def test_lastword_items_strip_punctuation_and_are_seeded() -> None:
    task = lastword_task(TEXTS + ["Too short.", "Ends in a number 42."], n=None, seed=3)
    texts = [doc["text"] for doc in task.docs]
    assert len(texts) == len(TEXTS)
    assert all(not text.endswith(".") and text.split(" ")[-1].isalpha() for text in texts)
    assert texts == [d["text"] for d in lastword_task(TEXTS, seed=3).docs]
    assert texts != [d["text"] for d in lastword_task(TEXTS, seed=4).docs]
    assert len(lastword_task(TEXTS, n=5).docs) == 5
    with pytest.raises(SuiteDataError, match="no text"):
        lastword_task(["a b c"])


def test_geofacts_mc_choices_hold_the_true_object_and_the_counterfactual() -> None:
    task = geofacts_mc_task(CASES, n_choices=4, seed=0)
    assert len(task.docs) == 4  # Spain once; Peru's relation has too few objects
    for doc in task.docs:
        case = next(c for c in CASES if c.case_id == doc["case_id"])
        assert doc["choices"][doc["label"]] == case.target_true
        assert case.target_new in doc["choices"]
        assert len(set(doc["choices"])) == 4
        assert doc["query"] == case.filled_prompt


def test_mmlu_subset_from_the_real_file(shared_data) -> None:
    path = shared_data / "mmlu" / "mmlu.json"
    task = mmlu_task(read_mmlu(path), source=str(path))
    counts = {
        s: sum(d["subject"] == s for d in task.docs)
        for s in ("formal_logic", "public_relations", "college_physics", "global_facts")
    }
    assert counts == {"formal_logic": 14, "public_relations": 11, "college_physics": 11, "global_facts": 9}


def test_mmlu_bad_record_names_file_record_and_field() -> None:
    good = {"question": "Q?", "subject": "global_facts", "choices": ["a", "b", "c", "d"], "answer": 1}
    bad = dict(good, answer=7)
    with pytest.raises(SuiteDataError, match=r"x\.json, record 1, field 'answer'"):
        mmlu_task([good, bad], subjects=("global_facts",), source="x.json")
    with pytest.raises(SuiteDataError, match="no MMLU question"):
        mmlu_task([good], subjects=("global_facts", "formal_logic"))


def test_build_local_tasks_needs_an_mmlu_file(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("EDITCOLLAPSE_MMLU", raising=False)
    monkeypatch.setenv("EDITCOLLAPSE_DATA", str(tmp_path))
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="EDITCOLLAPSE_MMLU"):
        build_local_tasks(["ec_mmlu_sub"])
    with pytest.raises(ValueError, match="not an offline suite"):
        build_local_tasks(["piqa"])


def test_write_suite_yaml_points_at_absolute_data(tmp_path) -> None:
    folder = write_suite([lastword_task(TEXTS, n=10)], tmp_path / "suite")
    config = yaml.safe_load((folder / "ec_lastword_embedded.yaml").read_text())
    data = config["dataset_kwargs"]["data_files"]["test"]
    assert config["dataset_path"] == "json" and data.startswith("/")
    assert len(open(data).read().splitlines()) == 10


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    folder = write_suite([lastword_task(TEXTS, n=10), geofacts_mc_task(CASES)], tmp_path_factory.mktemp("suite"))
    names = ["ec_lastword_embedded", "ec_geofacts_mc"]
    return load_tasks(names, task_manager_for(names, [folder]))


def test_tiny_model_scores_and_edits_change_them(tiny_suite, capsys) -> None:
    loaded = load_model("tiny-llama", device="cpu")
    said: list[str] = []
    listener = logging.Handler(logging.WARNING)
    listener.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("lm_eval").addHandler(listener)
    try:
        scores = evaluate_model(loaded.model, loaded.tokenizer, tiny_suite, batch_size=4, bootstrap_iters=1000)
    finally:
        logging.getLogger("lm_eval").removeHandler(listener)
    out, err = capsys.readouterr()  # lm-eval's bars and prints stay off the terminal (stdout holds JSON results)
    assert (out, err) == ("", "") and not [line for line in said if line.startswith(MODEL_OBJECT_NOTES)]
    by_key = {(s.task, s.metric): s for s in scores}
    assert set(by_key) == {
        ("ec_lastword_embedded", "perplexity"),
        ("ec_lastword_embedded", "acc"),
        ("ec_geofacts_mc", "acc"),
        ("ec_geofacts_mc", "acc_norm"),
    }
    assert by_key[("ec_lastword_embedded", "acc")].n == 10 and by_key[("ec_geofacts_mc", "acc")].n == 4
    ppl = by_key[("ec_lastword_embedded", "perplexity")]
    assert ppl.value > 1 and math.isfinite(ppl.stderr)
    # the model object is what lm-eval evaluates: an applied Delta changes the number, removal restores it
    weight = loaded.arch.rewrite_weight(loaded.model, 1)
    delta = Delta(
        "test", {f"{loaded.arch.name('rewrite_module_tmp', 1)}.weight": ParamDelta(dense=torch.full_like(weight, 0.5))}
    )
    with delta.applied(loaded.model):
        edited = evaluate_model(loaded.model, loaded.tokenizer, tiny_suite, batch_size=4, bootstrap_iters=1000)
    again = evaluate_model(loaded.model, loaded.tokenizer, tiny_suite, batch_size=4, bootstrap_iters=1000)
    edited_ppl = next(s for s in edited if s.metric == "perplexity")
    assert edited_ppl.value != pytest.approx(ppl.value, rel=1e-6)
    assert again == scores


def test_unknown_task_is_reported_not_fatal(tmp_path) -> None:
    folder = write_suite([lastword_task(TEXTS, n=10)], tmp_path)
    manager = task_manager_for(["ec_lastword_embedded"], [folder])
    loaded = load_tasks(["ec_lastword_embedded", "no_such_task"], manager)
    assert list(loaded.tasks) == ["ec_lastword_embedded"] and "no_such_task" in loaded.unreachable


def test_scores_from_results_flattens_filters_and_missing_stderr() -> None:
    results = {
        "results": {
            "t": {
                "alias": "t",
                "acc,none": 0.5,
                "acc_stderr,none": 0.1,
                "exact_match,strip": 0.25,
                "exact_match_stderr,strip": "N/A",
            }
        },
        "n-samples": {"t": {"original": 20, "effective": 8}},
    }
    scores = scores_from_results(json.loads(json.dumps(results)))
    assert [(s.metric, s.filter, s.value, s.n) for s in scores] == [
        ("acc", "none", 0.5, 8),
        ("exact_match", "strip", 0.25, 8),
    ]
    assert scores[0].stderr == 0.1 and math.isnan(scores[1].stderr)


def _rows(ppl, values, task="t", metric="acc"):
    return [
        {
            "task": task,
            "metric": metric,
            "value": v,
            "ppl_mean": p,
            "stderr": 0.01,
            "edit_ref": "baseline" if i == 0 else f"c{i}",
        }
        for i, (p, v) in enumerate(zip(ppl, values))
    ]


def test_correlations_on_log_perplexity_with_exclusions() -> None:
    ppl = [10, 100, 1000, 10000, math.inf, math.nan]
    values = [0.8, 0.6, 0.4, 0.2, 0.1, 0.5]
    (result,) = correlation.correlations(_rows(ppl, values))
    assert (result.n, result.n_excluded) == (4, 2)
    assert result.pearson_r == pytest.approx(-1.0)  # linear in log10(ppl)
    assert result.spearman_rho == pytest.approx(-1.0)
    (few,) = correlation.correlations(_rows([10, 100], [0.5, 0.4]))
    assert few.n == 2 and math.isnan(few.pearson_r)
    (flat,) = correlation.correlations(_rows([10, 100, 1000], [0.5, 0.5, 0.5]))
    assert math.isnan(flat.spearman_rho)


def test_scatter_plot_writes_a_png(tmp_path) -> None:
    rows = _rows([10, 50, 2000], [0.6, 0.5, 0.3]) + _rows(
        [10, 50, 2000], [20.0, 30.0, 900.0], task="lw", metric="perplexity"
    )
    path = correlation.scatter_plot(rows, tmp_path / "fig.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
