"""The study's table of steps (pure, no Prefect): which steps run, and the config each stage gets
from the study's config and the results before it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from editcollapse.stages.study import (
    PREFLIGHT_STEPS,
    STAGES,
    STUDY_STEPS,
    DownstreamPart,
    HardEditPart,
    SequentialPart,
    StudyConfig,
    StudyResult,
    chosen_steps,
)


@dataclass(frozen=True)
class _Done:
    run_id: str
    unique_valid: int = 1


STUDY = StudyConfig(
    model="tiny-gpt2",
    method="r-rome",
    dataset="cases.json",
    limit=6,
    shard_size=3,
    ppl_corpus="corpus.txt",
    threshold=500.0,
    seed=7,
    device="cpu",
    sequential=SequentialPart(n_edits=2, trials=1),
    hardedit=HardEditPart(backend="openai", calls=1, max_new_tokens=300, model="gpt-x", base_url="http://llm", limit=4),
    downstream=DownstreamPart(tasks=("ec_lastword",), limit=3, k=1),
)


def _configs(results: dict) -> dict:
    return {step.name: step.build(STUDY, results) for step in STUDY_STEPS}


def test_every_stage_gets_the_shared_settings() -> None:
    configs = _configs({"sweep": _Done("sweep-1"), "hardedit-generate": _Done("gen-1")})
    sweep = configs["sweep"]
    assert (sweep.model, sweep.method, sweep.dataset, sweep.limit, sweep.shard_size) == (
        "tiny-gpt2",
        "r-rome",
        "cases.json",
        6,
        3,
    )
    assert (sweep.ppl_corpus, sweep.threshold, sweep.seed, sweep.device) == ("corpus.txt", 500.0, 7, "cpu")
    for name in ("sequential", "hardedit-filter", "downstream"):
        config = configs[name]
        assert (config.method, config.ppl_corpus, config.seed, config.device) == ("r-rome", "corpus.txt", 7, "cpu"), (
            name
        )
    assert configs["hardcf"].threshold == configs["analysis"].threshold == configs["sequential"].threshold == 500.0


def test_later_steps_read_the_runs_of_earlier_ones() -> None:
    configs = _configs({"sweep": _Done("sweep-1"), "hardedit-generate": _Done("gen-1")})
    assert configs["hardcf"].runs == ("sweep-1",) and configs["hardcf"].models == ("tiny-gpt2",)
    assert configs["downstream"].source_run == "sweep-1"
    assert configs["hardedit-filter"].candidate_runs == ("gen-1",)
    assert configs["hardedit-filter"].reference_models == ("tiny-gpt2",) and configs["hardedit-filter"].limit == 4
    assert (configs["sequential"].n_edits, configs["sequential"].trials) == (2, 1)
    assert (configs["downstream"].tasks, configs["downstream"].limit, configs["downstream"].k) == (
        ("ec_lastword",),
        3,
        1,
    )
    generation = configs["hardedit-generate"]
    assert (generation.backend, generation.model, generation.base_url, generation.n_calls) == (
        "openai",
        "gpt-x",
        "http://llm",
        1,
    )
    assert generation.max_new_tokens == 300


def test_without_the_sweep_hardcf_reads_every_sweep() -> None:
    (hardcf,) = [step for step in STUDY_STEPS if step.name == "hardcf"]
    assert hardcf.build(STUDY, {}).runs == ()


def test_the_local_generator_defaults_to_the_embedded_model() -> None:
    (generate,) = [step for step in STUDY_STEPS if step.name == "hardedit-generate"]
    config = generate.build(StudyConfig(), {})
    assert config.backend == "local" and config.local_model == "smollm2-135m" and config.model is None


def test_filter_has_nothing_to_do_without_valid_candidates() -> None:
    (filter_,) = [step for step in STUDY_STEPS if step.name == "hardedit-filter"]
    assert filter_.needs == "hardedit-generate"
    assert filter_.nothing_to_do({"hardedit-generate": _Done("gen-1", unique_valid=0)}) == (
        "the generator produced no valid candidate"
    )
    assert filter_.nothing_to_do({"hardedit-generate": _Done("gen-1", unique_valid=2)}) is None


def test_stages_choose_steps_in_order() -> None:
    assert [step.name for step in chosen_steps(StudyConfig())] == [
        "sweep",
        "hardcf",
        "sequential",
        "hardedit-generate",
        "hardedit-filter",
        "downstream",
        "analysis",
    ]
    chosen = chosen_steps(StudyConfig(stages=("analysis", "hardedit", "sweep")))
    assert [step.name for step in chosen] == ["sweep", "hardedit-generate", "hardedit-filter", "analysis"]
    assert {step.stage for step in STUDY_STEPS} == set(STAGES)


def test_unknown_or_no_stages_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown stage\(s\) sweeps — the stages are sweep, hardcf"):
        StudyConfig(stages=("sweeps",))
    with pytest.raises(ValueError, match="stages is empty"):
        StudyConfig(stages=())


def test_study_result_names_failed_steps() -> None:
    result = StudyResult(
        warehouse="wh",
        steps=(
            {"step": "sweep", "state": "Failed", "result": "no cases"},
            {"step": "hardcf", "state": "skipped", "result": "sweep failed"},
            {"step": "analysis", "state": "completed", "result": "0 table rows"},
        ),
        results={},
    )
    assert result.failed == ["sweep"]
    assert result.headline() == "1 of 3 steps completed; failed: sweep"


def test_a_study_run_id_names_each_step_run() -> None:
    study = StudyConfig(model="tiny-gpt2", run_id="s1")
    built = {step.name: step.build(study, {}) for step in chosen_steps(study) if step.name in PREFLIGHT_STEPS}
    assert {name: config.run_id for name, config in built.items()} == {
        "sweep": "s1-sweep",
        "sequential": "s1-sequential",
        "hardedit-generate": "s1-hardedit-generate",
        "downstream": "s1-downstream",
    }
    assert StudyConfig().step_run_id("sweep") is None


def test_the_study_preflight_checks_the_steps_it_runs() -> None:
    from editcollapse.models.loading import ModelNotAvailable

    with pytest.raises(ModelNotAvailable, match="unknown model 'no-such-model'"):
        StudyConfig(model="no-such-model", stages=("sweep",)).preflight()
    StudyConfig(model="no-such-model", stages=("analysis",)).preflight()  # the analysis loads no model


def test_without_the_released_me_ppl_50_every_stage_measures_on_the_fallback(tmp_path, monkeypatch) -> None:
    """A fresh machine has no ME-PPL-50 file: every stage of the study gets the embedded corpus the
    sweep falls back to (one corpus for the whole study), and the preflight accepts it."""
    from editcollapse.stages.sweep.plan import FALLBACK_PPL_CORPUS

    monkeypatch.setenv("EDITCOLLAPSE_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    study = StudyConfig(model="tiny-gpt2", stages=("sweep", "sequential", "downstream"))
    corpora = {step.name: step.build(study, {}).ppl_corpus for step in chosen_steps(study)}
    assert corpora == dict.fromkeys(("sweep", "sequential", "downstream"), FALLBACK_PPL_CORPUS)
    study.preflight()
