"""The sequential flow end to end on a tiny model: groups from the warehouse, table rows, figures, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SUBJECTS = ["Paris", "Spain", "Tokyo", "Egypt", "Chile", "Oslo", "Peru", "Kenya", "Ghana", "Nepal", "Cuba", "Fiji"]
OBJECTS = ["Rome", "Oslo", "Lima", "Cairo", "Quito", "Bern", "Dakar", "Hanoi", "Accra", "Doha", "Riga", "Suva"]


@pytest.fixture()
def inputs(tmp_path: Path) -> dict:
    """A 12-case CounterFact-form file, a 2-sentence perplexity corpus, and a warehouse whose
    single-edit tables name one collapsed case (``hardcf``) and rank the others (``ppl``)."""
    from editcollapse.warehouse import Warehouse

    cases = [
        dict(
            case_id=i,
            prompt=f"{s} is located in",
            subject=s,
            target_new=OBJECTS[i],
            ground_truth=OBJECTS[(i + 5) % 12],
            rephrase_prompt=f"Where is {s}? It is in",
            locality_prompt="Berlin is located in",
            locality_ground_truth="Germany",
        )
        for i, s in enumerate(SUBJECTS)
    ]
    (tmp_path / "cf.json").write_text(json.dumps(cases))
    texts = [
        "The river runs through the old town and under seven bridges.",
        "She opened the window and the cold air filled the small room.",
    ]
    (tmp_path / "ppl.json").write_text(json.dumps([{"Corpus": "test", "Text": t} for t in texts]))
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.write_part(
        "hardcf",
        [
            {
                "run_id": "h",
                "case_id": "counterfact:4",
                "ppl_mean": 4000.0,
                "collapsed": True,
                "source_model": "tiny-gpt2",
            }
        ],
        model="any",
        method="select",
        run_id="h",
        shard=0,
    )
    warehouse.write_part(
        "ppl",
        [
            {"run_id": "s", "case_id": f"counterfact:{i}", "ppl_mean": 100.0 + i, "collapsed": False}
            for i in (0, 1, 2, 3, 5)
        ],
        model="tiny-gpt2",
        method="rome",
        run_id="s",
        shard=0,
    )
    return {
        "dataset": str(tmp_path / "cf.json"),
        "ppl_corpus": str(tmp_path / "ppl.json"),
        "warehouse": str(tmp_path / "wh"),
    }


@pytest.mark.slow
def test_flow_writes_rows_figures_and_resumes(inputs: dict) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from editcollapse.orchestration.flows.sequential import sequential_editing
    from editcollapse.stages.sequential.config import SequentialConfig
    from editcollapse.warehouse import Warehouse, connect

    # the second corpus is the first one again, every 2 edits: where both were measured they agree
    config = SequentialConfig(
        model="tiny-gpt2",
        method="rome",
        hard_source="hardcf",
        n_edits=3,
        trials=1,
        seed=0,
        ppl_every=2,
        extra_corpus=inputs["ppl_corpus"],
        extra_every=2,
        dataset=inputs["dataset"],
        ppl_corpus=inputs["ppl_corpus"],
        device="cpu",
    )
    with prefect_test_harness(server_startup_timeout=180):  # the shared CPU can be slow to start it
        result = sequential_editing(config=config, warehouse=inputs["warehouse"])
    warehouse = Warehouse(inputs["warehouse"])
    rows = warehouse.read("sequential", model="tiny-gpt2", method="rome", run_id=result.run_id).to_pylist()
    assert {(r["group"], r["trial"]) for r in rows} == {("hard", 0), ("normal", 0)}
    hard = sorted((r for r in rows if r["group"] == "hard"), key=lambda r: r["step"])
    # the collapsed case plus the two highest single-edit perplexities (5 and 3), in a seeded order
    assert {r["case_id"]: r["selection"] for r in hard[1:]} == {
        "counterfact:4": "collapsed",
        "counterfact:5": "top_ppl",
        "counterfact:3": "top_ppl",
    }
    normal_ids = {r["case_id"] for r in rows if r["group"] == "normal" and r["step"] > 0}
    assert len(normal_ids) == 3 and not normal_ids & {"counterfact:3", "counterfact:4", "counterfact:5"}
    assert [r["ppl_mean"] is not None for r in hard] == [True, False, True, True]  # steps 0, 2 and the last
    assert all(json.loads(r["norms"]) for r in hard[1:])
    # the single-edit perplexity each hard case was chosen by (hardcf's 4000 for the collapsed one)
    assert {r["case_id"]: r["single_ppl"] for r in hard[1:]} == {
        "counterfact:4": 4000.0,
        "counterfact:5": 105.0,
        "counterfact:3": 103.0,
    }
    # success of every edit so far where evaluated; the editor's diagnostics as typed columns and JSON
    assert [None if r["successes"] is None else len(r["successes"]) for r in hard] == [0, None, 2, 3]
    assert all(r["newest_success"] == r["successes"][-1] for r in hard if r["successes"])
    for r in hard[1:]:
        diagnostics = json.loads(r["diagnostics"])
        assert r["denominator"] == diagnostics["denominator"] != 0
        assert r["target_nll"] == diagnostics["target_nll"] and r["layer"] == diagnostics["layer"]
        assert r["edit_seconds"] > 0 and r["seconds"] >= r["edit_seconds"]
    assert hard[0]["diagnostics"] is None and hard[0]["denominator"] is None
    assert [r["extra_ppl_mean"] is not None for r in hard] == [True, False, True, True]
    assert all(
        r["extra_ppl_mean"] == r["ppl_mean"] and r["extra_corpus"] == inputs["ppl_corpus"]
        for r in hard
        if r["extra_ppl_mean"] is not None
    )
    assert len(result.plots) == 3
    assert all(Path(figure).stat().st_size > 1000 for figure in result.plots)
    run = warehouse.read("runs", model="tiny-gpt2", method="rome", run_id=result.run_id).to_pylist()[0]
    assert run["status"] == "completed" and run["stage"] == "sequential" and run["n_cases"] == 6
    count = (
        connect(inputs["warehouse"])
        .execute("select count(*) from sequential where run = ?", [result.run_id])
        .fetchone()[0]
    )
    assert count == 8

    parts = warehouse.parts("sequential")
    stamps = {p: p.stat().st_mtime_ns for p in parts}
    again = sequential_editing.fn(config, inputs["warehouse"])  # same config: same run, read back, nothing recomputed
    assert again.run_id == result.run_id and again.summary == result.summary
    assert [(line["group"], line["edits"]) for line in result.summary] == [("hard", 3), ("normal", 3)]
    assert (
        result.headline().startswith("hard trial 0: 3 edits, ") and "; normal trial 0: 3 edits, " in result.headline()
    )
    assert {p: p.stat().st_mtime_ns for p in warehouse.parts("sequential")} == stamps


def test_cli_runs_without_prefect(inputs: dict, bar_updates) -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app

    result = CliRunner().invoke(
        app,
        [
            "sequential",
            "--model",
            "tiny-gpt2",
            "--method",
            "rome",
            "--n-edits",
            "2",
            "--trials",
            "1",
            "--dataset",
            inputs["dataset"],
            "--ppl-corpus",
            inputs["ppl_corpus"],
            "--warehouse",
            inputs["warehouse"],
            "--no-prefect",
            "--extra-corpus",
            inputs["ppl_corpus"],
            "--extra-every",
            "5",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "hard" in result.output and "normal" in result.output
    # the bar over 2 trajectories × 2 edits: the start, then steps 0-2 and the end of each trajectory
    assert bar_updates == [(0, 4), (0, 4), (1, 4), (2, 4), (2, 4), (2, 4), (3, 4), (4, 4), (4, 4)]
    from editcollapse.warehouse import Warehouse

    parts = Warehouse(inputs["warehouse"]).parts("sequential")
    assert sorted(p.name for p in parts) == ["part-hard-trial000.parquet", "part-normal-trial000.parquet"]
    assert len(list(parts[0].parent.glob("*.png"))) == 3  # perplexity, weight change, second corpus
    rows = Warehouse(inputs["warehouse"]).read("sequential").to_pylist()
    # every 5 edits and at the end: steps 0 and 2 of the 2-edit trajectories
    assert sorted((r["step"], r["extra_ppl_mean"] == r["ppl_mean"]) for r in rows if r["extra_ppl_mean"]) == [
        (0, True),
        (0, True),
        (2, True),
        (2, True),
    ]


def test_cli_refuses_an_invalid_option_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app

    result = CliRunner().invoke(app, ["sequential", "--n-edits", "0", "-w", str(tmp_path / "wh"), "--no-prefect"])
    assert result.exit_code == 2 and "n_edits and trials must be ≥ 1, got 0 and 3" in result.output
    assert not (tmp_path / "wh").exists()
