"""Sequential editing: group selection, a real trajectory on a tiny model, norms, resume after SIGKILL."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta
from editcollapse.stages.sequential.groups import Member, Scored, content_key, sample_normal, select_hard, trial_order
from editcollapse.stages.sequential.measure import CorpusEvaluator
from editcollapse.stages.sequential.store import StepStore
from editcollapse.stages.sequential.trajectory import EditFn, Measurement, TrajectorySettings, run_trajectory

METHOD = "rome"
TINY = "tiny-gpt2"
TEXTS = (
    "The river runs through the old town and under seven bridges.",
    "She opened the window and the cold air filled the small room.",
    "Most of the city was rebuilt after the great fire of the last century.",
)
SUBJECTS = ["Paris", "Spain", "Tokyo", "Egypt", "Chile", "Oslo", "Peru", "Kenya"]
TARGETS = ["Rome", "Oslo", "Lima", "Cairo", "Quito", "Bern", "Dakar", "Hanoi"]


def tiny_cases(n: int = 8) -> list[EditCase]:
    return [
        EditCase(
            case_id=f"tiny:{i}",
            dataset="tiny",
            prompt="{} is located in",
            subject=SUBJECTS[i],
            target_new=TARGETS[i],
            target_true=TARGETS[(i + 3) % 8],
        )
        for i in range(n)
    ]


def pool(n: int) -> list[EditCase]:
    return [
        EditCase(
            case_id=f"pool:{i}",
            dataset="pool",
            prompt="{} is in",
            subject=f"S{i}",
            target_new=f"T{i}",
            target_true=f"U{i}",
        )
        for i in range(n)
    ]


# --- groups ---------------------------------------------------------------------------------------


def test_normal_group_is_reproducible_and_disjoint() -> None:
    cases = pool(200)
    hard = cases[:20]
    # a copy of a hard case under another id (a HardCF file's own ids) is excluded by content
    twin = EditCase(
        case_id="file:0",
        dataset="hardcf",
        prompt=hard[0].prompt,
        subject=hard[0].subject,
        target_new=hard[0].target_new,
    )
    first = sample_normal(cases, [*hard, twin], 20, seed=7)
    again = sample_normal(list(reversed(cases)), [*hard, twin], 20, seed=7)
    other = sample_normal(cases, hard, 20, seed=8)
    assert [m.case.case_id for m in first] == [m.case.case_id for m in again]
    assert [m.case.case_id for m in first] != [m.case.case_id for m in other]
    assert not {m.case.case_id for m in first} & {c.case_id for c in hard}
    assert all(m.role == "random" for m in first)
    with pytest.raises(ValueError, match="only 180 cases outside"):
        sample_normal(cases, hard, 181, seed=0)

    file_hard = [twin]
    sampled = sample_normal(cases[:2], file_hard, 1, seed=0)
    assert content_key(sampled[0].case) != content_key(twin)


def test_hard_group_fills_with_highest_single_edit_ppl() -> None:
    cases = pool(10)
    collapsed = [Scored(cases[3], 5000.0), Scored(cases[7], math.inf)]
    ranked = [Scored(c, float(i)) for i, c in enumerate(cases)] + [Scored(cases[3], 5000.0)]
    ranked[5] = Scored(cases[5], None)  # not measured: never a fill
    members = select_hard(collapsed, ranked, 5)
    assert [(m.case.case_id, m.role) for m in members] == [
        ("pool:7", "collapsed"),
        ("pool:3", "collapsed"),
        ("pool:9", "top_ppl"),
        ("pool:8", "top_ppl"),
        ("pool:6", "top_ppl"),
    ]
    assert members[2].single_ppl == 9.0
    with pytest.raises(ValueError, match="only 9 are known"):
        select_hard(collapsed, ranked, 10)


def test_trial_order_is_seeded() -> None:
    members = [Member(c, "random") for c in pool(10)]
    assert trial_order(members, 4, 0, 1) == trial_order(members, 4, 0, 1)
    assert trial_order(members, 4, 0, 1) != trial_order(members, 4, 0, 2)
    assert len(trial_order(members, 40, 0, 0)) == 10


# --- a real trajectory on a tiny model --------------------------------------------------------------


def run_small(
    folder: str, kill_at: int = 0, n: int = 5, method: str = METHOD, model: str = TINY, loaded=None
) -> list[dict]:
    """A trajectory of ``n`` real edits on a tiny model; SIGKILLs its own process after step ``kill_at``."""
    from dataclasses import replace

    from editcollapse.editors.api import load_hparams
    from editcollapse.models import load_model
    from editcollapse.stages.sequential.run import make_edit

    torch.set_num_threads(1)
    loaded = loaded or load_model(model, device="cpu")
    hparams = replace(load_hparams(method, model), model_revision=loaded.revision)
    members = [Member(case, "collapsed") for case in tiny_cases(n)]

    def on_step(row: dict) -> None:
        if kill_at and row["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    return run_trajectory(
        loaded,
        make_edit(method, hparams),
        members,
        CorpusEvaluator(TEXTS),
        StepStore(folder),
        TrajectorySettings(),
        {"run_id": "r", "group": "hard", "trial": 0, "corpus": "tiny"},
        on_step=on_step,
    )


def test_five_edit_trajectory_on_a_tiny_model(tmp_path: Path) -> None:
    from editcollapse.models import load_model

    loaded = load_model(TINY, device="cpu")
    before = [p.detach().clone() for p in loaded.model.parameters()]
    rows = run_small(str(tmp_path / "t"), loaded=loaded)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[0]["case_id"] is None and rows[0]["norms"] == [] and rows[0]["successes"] == []
    assert [r["case_id"] for r in rows[1:]] == [f"tiny:{i}" for i in range(5)]
    assert all(r["error"] is None and math.isfinite(r["ppl_mean"]) for r in rows)
    assert [len(r["successes"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    assert all(r["newest_success"] == r["successes"][-1] for r in rows[1:])
    # the edited matrix's cumulative change grows with the edits; every step stored its Delta
    assert rows[5]["cumulative_fro"] > rows[1]["cumulative_fro"] > 0
    assert all((tmp_path / "t" / f"step-{s:04d}.safetensors").exists() for s in range(1, 6))
    # the model is restored bit for bit afterwards
    assert all(torch.equal(a, b) for a, b in zip(before, loaded.model.parameters(), strict=True))


def test_norms_match_the_materialised_cumulative_change(tmp_path: Path) -> None:
    from editcollapse.models import load_model

    rows = run_small(str(tmp_path / "t"), n=3)
    loaded = load_model(TINY, device="cpu")
    base = {name: p.detach().clone() for name, p in loaded.model.named_parameters()}
    store = StepStore(tmp_path / "t")
    for step in (1, 2, 3):
        store.load_delta(step).apply(loaded.model)
        params = dict(loaded.model.named_parameters())
        for record in rows[step]["norms"]:
            cumulative = (params[record["param"]].detach() - base[record["param"]]).double()
            own = store.load_delta(step).params[record["param"]].materialize().double()
            # the weights are float32: W + ΣΔ rounds, so compare to float32 precision
            for value, matrix, key in (
                (record["cum_fro"], cumulative, "fro"),
                (record["cum_spectral"], cumulative, 2),
                (record["step_fro"], own, "fro"),
                (record["step_spectral"], own, 2),
            ):
                assert value == pytest.approx(torch.linalg.matrix_norm(matrix, key).item(), rel=1e-4)
        assert rows[step]["cumulative_fro"] == pytest.approx(
            math.sqrt(sum(r["cum_fro"] ** 2 for r in rows[step]["norms"])), rel=1e-12
        )


def _in_subprocess(folder: Path, out: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
    script = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_sequential as t; rows = t.run_small({str(folder)!r}, kill_at={kill_at}); "
        f"open({str(out)!r}, 'w').write(json.dumps(rows))"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "edit_seconds", "eval_seconds")} for row in rows]


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_rows(tmp_path: Path) -> None:
    reference = _in_subprocess(tmp_path / "whole", tmp_path / "whole.json")
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = _in_subprocess(tmp_path / "killed", tmp_path / "never.json", kill_at=3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "never.json").exists()
    assert (tmp_path / "killed" / "step-0003.json").exists()
    assert not (tmp_path / "killed" / "step-0004.json").exists()
    resumed = _in_subprocess(tmp_path / "killed", tmp_path / "resumed.json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = json.loads((tmp_path / "whole.json").read_text())
    again = json.loads((tmp_path / "resumed.json").read_text())
    assert len(whole) == 6
    assert _comparable(again) == _comparable(whole)


# --- control flow with a scripted evaluator ---------------------------------------------------------


class ScriptedPerplexity:
    """Returns preset perplexities in call order (to test stopping, not to measure anything)."""

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)
        self.calls: list[int] = []

    def __call__(self, loaded, cases) -> Measurement:
        self.calls.append(len(cases))
        return Measurement(ppl=self.values.pop(0), ppl_corpus_level=0.0, successes=[1.0] * len(cases))


def ones_edit(loaded) -> tuple[EditFn, torch.Size]:
    """An edit function that adds the rank-one 𝟙𝟙ᵀ to layer 1's rewrite matrix, and that matrix's shape."""
    from editcollapse.core.delta import ParamDelta

    name = loaded.arch.name("rewrite_module_tmp", 1) + ".weight"
    shape = loaded.arch.rewrite_weight(loaded.model, 1).shape

    def edit(_loaded, case, _earlier) -> Delta:
        return Delta(
            method="test",
            params={name: ParamDelta(u=torch.ones(shape[0], 1), v=torch.ones(shape[1], 1))},
            case_ids=(case.case_id,),
        )

    return edit, shape


def test_stops_at_collapse_and_evaluates_every_k(tmp_path: Path) -> None:
    from editcollapse.models import load_model

    loaded = load_model("tiny-llama", device="cpu")
    before = loaded.arch.rewrite_weight(loaded.model, 1).detach().clone()
    edit, shape = ones_edit(loaded)
    members = [Member(c, "random") for c in pool(9)]
    evaluate = ScriptedPerplexity([10.0, 20.0, math.nan])
    rows = run_trajectory(
        loaded,
        edit,
        members,
        evaluate,
        StepStore(tmp_path / "k"),
        TrajectorySettings(ppl_every=3),
        {"run_id": "r", "group": "normal", "trial": 0},
    )
    assert evaluate.calls == [0, 3, 6]  # step 0, then every 3rd edit
    assert [r["step"] for r in rows] == list(range(7))  # NaN perplexity at step 6 is collapse: stop
    assert rows[6]["collapsed"] is True and rows[3]["collapsed"] is False and rows[4]["ppl_mean"] is None
    # rank-one ones·onesᵀ: after k edits the change is k·𝟙𝟙ᵀ, spectral norm k·√(rows·cols)
    assert rows[6]["cumulative_spectral"] == pytest.approx(6 * math.sqrt(shape[0] * shape[1]))
    assert torch.equal(loaded.arch.rewrite_weight(loaded.model, 1), before)


def test_a_failed_edit_is_a_row_and_the_trajectory_goes_on(tmp_path: Path) -> None:
    from editcollapse.models import load_model

    loaded = load_model("tiny-llama", device="cpu")

    def edit(_loaded, case, _earlier) -> Delta:
        raise ValueError(f"subject of {case.case_id} not found")

    rows = run_trajectory(
        loaded,
        edit,
        [Member(c, "random") for c in pool(2)],
        ScriptedPerplexity([5.0] * 3),
        StepStore(tmp_path / "e"),
        TrajectorySettings(),
        {"run_id": "r"},
    )
    assert [r["error"] for r in rows] == [
        None,
        "ValueError: subject of pool:0 not found",
        "ValueError: subject of pool:1 not found",
    ]
    assert rows[2]["norms"] == [] and rows[2]["cumulative_fro"] is None


def test_each_edit_is_given_the_sum_of_the_earlier_ones_also_after_a_resume(tmp_path: Path) -> None:
    from editcollapse.models import load_model

    loaded = load_model("tiny-llama", device="cpu")
    ones, _ = ones_edit(loaded)
    seen: list[tuple[str, ...] | None] = []

    def edit(model, case, earlier) -> Delta:
        seen.append(None if earlier is None else earlier.case_ids)
        return ones(model, case, earlier)

    def run() -> list[dict]:
        return run_trajectory(
            loaded,
            edit,
            [Member(c, "random") for c in pool(3)],
            ScriptedPerplexity([1.0] * 4),
            StepStore(tmp_path / "s"),
            TrajectorySettings(),
            {"run_id": "r"},
        )

    run()
    assert seen == [None, ("pool:0",), ("pool:0", "pool:1")]
    (tmp_path / "s" / "step-0003.json").unlink()  # killed before step 3 was stored
    seen.clear()
    run()
    assert seen == [None, ("pool:0", "pool:1")]  # step 1 recomputed on the unedited model, then step 3


def test_alphaedit_resumes_with_the_keys_of_the_stored_steps(tmp_path: Path) -> None:
    """AlphaEdit's key cache is the stored Deltas' ``carry``: a resumed trajectory computes what an
    uninterrupted one computes, its cache included (``earlier_keys`` grows 0, 1, 2 per layer)."""
    whole = run_small(str(tmp_path / "whole"), n=3, method="alphaedit")
    assert [[layer["earlier_keys"] for layer in row["diagnostics"]["layers"]] for row in whole[1:]] == [
        [0, 0],
        [1, 1],
        [2, 2],
    ]
    run_small(str(tmp_path / "killed"), n=3, method="alphaedit")
    for suffix in ("json", "safetensors"):
        (tmp_path / "killed" / f"step-0003.{suffix}").unlink()  # killed before step 3 was stored
    again = run_small(str(tmp_path / "killed"), n=3, method="alphaedit")
    assert json.loads(json.dumps(_comparable(again))) == json.loads(json.dumps(_comparable(whole)))


def test_resume_refuses_another_plan(tmp_path: Path) -> None:
    store = StepStore(tmp_path / "p")
    store.check_plan(["a", "b"])
    store.check_plan(["a", "b"])
    with pytest.raises(ValueError, match="started with other cases"):
        store.check_plan(["a", "c"])


def test_the_device_is_an_execution_detail_not_part_of_the_run() -> None:
    from editcollapse.stages.sequential.config import SequentialConfig

    assert "device" not in SequentialConfig(device="cpu").parameters()
    assert SequentialConfig(device="cpu").default_run_id() == SequentialConfig().default_run_id()


def test_groups_from_a_hardcf_file_are_filled_from_the_ppl_table(tmp_path: Path) -> None:
    from editcollapse.stages.sequential.sources import build_groups
    from editcollapse.warehouse import Warehouse

    records = [
        {
            "case_id": i,
            "prompt": f"S{i} is in",
            "subject": f"S{i}",
            "target_new": f"T{i}",
            "ground_truth": f"U{i}",
            "rome_gpt2_ppl": 1500.0 + i,
        }
        for i in (3, 4)
    ]
    (tmp_path / "hard.json").write_text(json.dumps(records))
    cases = [
        EditCase(
            case_id=f"counterfact:{i}",
            dataset="counterfact",
            prompt="{} is in",
            subject=f"S{i}",
            target_new=f"T{i}",
            target_true=f"U{i}",
        )
        for i in range(30)
    ]
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.write_part(
        "ppl",
        [{"run_id": "s", "case_id": f"counterfact:{i}", "ppl_mean": 50.0 + i, "collapsed": False} for i in (1, 2, 7)],
        model="m",
        method="rome",
        run_id="s",
        shard=0,
    )
    groups = build_groups(str(tmp_path / "hard.json"), cases, 4, 0, warehouse=warehouse, model="m", method="rome")
    assert [(m.role, m.single_ppl) for m in groups.hard] == [
        ("collapsed", 1504.0),
        ("collapsed", 1503.0),
        ("top_ppl", 57.0),
        ("top_ppl", 52.0),
    ]
    hard_keys = {content_key(m.case) for m in groups.hard}
    assert len(groups.normal) == 4 and not hard_keys & {content_key(m.case) for m in groups.normal}


def test_a_second_corpus_every_k_edits_and_at_the_end(tmp_path: Path) -> None:
    from editcollapse.models import load_model
    from editcollapse.stages.sequential.measure import BaselineOnce

    loaded = load_model("tiny-llama", device="cpu")
    edit, _ = ones_edit(loaded)
    members = [Member(c, "random") for c in pool(5)]
    main, second = ScriptedPerplexity([10.0] * 6), ScriptedPerplexity([100.0, 200.0, 300.0])
    rows = run_trajectory(
        loaded,
        edit,
        members,
        main,
        StepStore(tmp_path / "x"),
        TrajectorySettings(extra_every=3),
        {"run_id": "r", "group": "normal", "trial": 0, "extra_corpus": "big"},
        extra=second,
    )
    assert second.calls == [0, 3, 5]  # step 0, every 3rd edit, the last step
    assert [r["extra_ppl_mean"] for r in rows] == [100.0, None, None, 200.0, None, 300.0]
    assert all(r["extra_corpus"] == "big" for r in rows)
    # a collapse (judged on the main corpus only) ends the trajectory with a second-corpus value too
    main, second = ScriptedPerplexity([10.0, 10.0, math.inf]), ScriptedPerplexity([1.0, 2.0])
    rows = run_trajectory(
        loaded,
        edit,
        members,
        main,
        StepStore(tmp_path / "y"),
        TrajectorySettings(extra_every=3),
        {"run_id": "r"},
        extra=second,
    )
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[2]["collapsed"] is True
    assert [r["extra_ppl_mean"] for r in rows] == [1.0, None, 2.0]

    # the unedited model is measured once per model, edited ones every time
    counted = ScriptedPerplexity([1.0, 2.0, 3.0])
    once = BaselineOnce(counted)
    assert once(loaded, []).ppl == 1.0 and once(loaded, []).ppl == 1.0
    assert once(loaded, pool(1)).ppl == 2.0 and once(loaded, pool(1)).ppl == 3.0
    assert counted.calls == [0, 1, 1]


def test_the_hard_group_can_come_from_one_sweep_run(tmp_path: Path) -> None:
    from editcollapse.stages.sequential.sources import build_groups
    from editcollapse.warehouse import Warehouse

    cases = [
        EditCase(
            case_id=f"counterfact:{i}",
            dataset="counterfact",
            prompt="{} is in",
            subject=f"S{i}",
            target_new=f"T{i}",
            target_true=f"U{i}",
        )
        for i in range(30)
    ]
    warehouse = Warehouse(tmp_path / "wh")
    for run, values in (("old", {1: 9000.0, 2: 80.0}), ("new", {3: 70.0, 4: 60.0, 5: 50.0})):
        warehouse.write_part(
            "ppl",
            [
                {"run_id": run, "case_id": f"counterfact:{i}", "ppl_mean": v, "collapsed": v > 1000}
                for i, v in values.items()
            ],
            model="m",
            method="rome",
            run_id=run,
            shard=0,
        )
    warehouse.write_part(
        "hardcf",
        [{"run_id": "h", "case_id": "counterfact:1", "ppl_mean": 9000.0, "collapsed": True, "source_run_id": "old"}],
        model="any",
        method="select",
        run_id="h",
        shard=0,
    )
    every = build_groups("hardcf", cases, 2, 0, warehouse=warehouse, model="m", method="rome")
    assert [(m.case.case_id, m.role, m.single_ppl) for m in every.hard] == [
        ("counterfact:1", "collapsed", 9000.0),
        ("counterfact:2", "top_ppl", 80.0),
    ]
    new = build_groups("hardcf", cases, 2, 0, warehouse=warehouse, model="m", method="rome", sweep_run="new")
    assert [(m.case.case_id, m.role, m.single_ppl) for m in new.hard] == [
        ("counterfact:3", "top_ppl", 70.0),
        ("counterfact:4", "top_ppl", 60.0),
    ]
    # a normal case the sweep measured carries its single-edit perplexity, the others None
    small = build_groups(
        "hardcf", [cases[i] for i in (0, 3, 4, 5)], 2, 0, warehouse=warehouse, model="m", method="rome", sweep_run="new"
    )
    assert sorted((m.case.case_id, m.single_ppl) for m in small.normal) == [
        ("counterfact:0", None),
        ("counterfact:5", 50.0),
    ]
    with pytest.raises(ValueError, match="no rows of sweep run 'gone'"):
        build_groups("hardcf", cases, 2, 0, warehouse=warehouse, model="m", method="rome", sweep_run="gone")


def test_legend_names_each_trial_while_a_group_has_few() -> None:
    from editcollapse.stages.sequential.plots import LINESTYLES, legend_labels

    few = legend_labels([("normal", 0), ("hard", 1), ("hard", 0)])
    assert few == {("hard", 0): "hard, trial 0", ("hard", 1): "hard, trial 1", ("normal", 0): "normal"}
    many = legend_labels([("hard", k) for k in range(len(LINESTYLES) + 1)])
    assert list(many.values()) == ["hard"] + [None] * len(LINESTYLES)
