"""The downstream flow end to end on a tiny model, checked against lm-eval's own command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from editcollapse.core.delta import Delta, ParamDelta
from editcollapse.models import load_model
from editcollapse.stages.downstream.evaluate import DownstreamContext, evaluate_ref
from editcollapse.stages.downstream.runner import load_tasks, task_manager_for
from editcollapse.stages.downstream.selection import EditRef
from editcollapse.stages.downstream.suites import lastword_task, write_suite
from editcollapse.warehouse.store import Warehouse

TASK = "ec_parity_lastword"
TEXTS = [
    f"On day {i} the keeper of the lighthouse wrote about the {w} in his small book."
    for i, w in enumerate(["storm", "gulls", "ships", "fog", "tide", "moon", "rocks", "wind", "lamp", "boats"])
]


def _printed_table(stdout: str) -> dict[tuple[str, str], str]:
    """{(task, metric): value as printed} from lm-eval's markdown results table."""
    values, task = {}, ""
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 7 or cells[0] in ("Tasks",) or set(cells[0]) <= {"-", ":"} and cells[0]:
            continue
        task = cells[0] or task
        values[(task, cells[4])] = cells[6]
    return values


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("downstream")
    loaded = load_model("tiny-llama", device="cpu")
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    write_suite([lastword_task(TEXTS, name=TASK, n=10)], root / "tasks")
    (root / "ppl.json").write_text(json.dumps([{"Corpus": "test", "Text": text} for text in TEXTS[:4]]))
    return root


@pytest.mark.slow
def test_flow_stores_what_the_lm_eval_command_line_prints(setup) -> None:
    from editcollapse.stages.downstream.config import DownstreamConfig
    from editcollapse.stages.downstream.pipeline import run_downstream  # the flow's body

    config = DownstreamConfig(
        model=str(setup / "model"),
        edits="none",
        tasks=(TASK,),
        limit=None,
        include_path=str(setup / "tasks"),
        ppl_corpus=str(setup / "ppl.json"),
        batch_size=8,
    )
    result = run_downstream(config, Warehouse(setup / "wh"))
    stored = {row["metric"]: row for row in Warehouse(setup / "wh").read("downstream").to_pylist()}
    assert set(stored) == {"acc", "perplexity"} and stored["acc"]["n"] == 10
    assert stored["acc"]["edit_ref"] == "baseline" and result.failed == {}
    assert result.headline() == f"2 scores, 0 failed edits; plot {result.plot}"

    command = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={setup / 'model'},dtype=float32",
        "--include_path",
        str(setup / "tasks"),
        "--tasks",
        TASK,
        "--batch_size",
        "8",
        "--device",
        "cpu",
        "--output_path",
        str(setup / "cli"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    printed = _printed_table(result.stdout)
    assert set(printed) == {(TASK, "acc"), (TASK, "perplexity")}, result.stdout
    for (_, metric), text in printed.items():  # the table rounds to the decimals it shows
        decimals = len(text.partition(".")[2])
        assert abs(stored[metric]["value"] - float(text)) <= 0.5 * 10**-decimals * (1 + 1e-9), (metric, text)
    (output,) = (setup / "cli").rglob("results_*.json")
    cli = json.loads(output.read_text())["results"][TASK]
    for metric in ("acc", "perplexity"):  # and the CLI's JSON to the last bit
        assert stored[metric]["value"] == cli[f"{metric},none"]
    assert stored["acc"]["stderr"] == cli["acc_stderr,none"]


def test_stored_deltas_are_applied_then_restored(setup, tmp_path) -> None:
    loaded = load_model(str(setup / "model"), device="cpu")
    tasks = load_tasks([TASK], task_manager_for([TASK], [setup / "tasks"]))
    context = DownstreamContext(loaded=loaded, tasks=tasks, ppl_texts=TEXTS[:4], method="rome", run_id="r")
    name = f"{loaded.arch.name('rewrite_module_tmp', 2)}.weight"
    weight = loaded.model.get_parameter(name)
    before = weight.detach().clone()
    paths = []
    for step in (1, 2):  # two sequential steps: their sum is the edited model
        path = tmp_path / f"step-{step:04d}.safetensors"
        Delta(
            "rome",
            {name: ParamDelta(u=torch.randn(weight.shape[0], 1), v=torch.randn(weight.shape[1], 1))},
            case_ids=(f"c{step}",),
        ).save(path)
        paths.append(str(path))
    base = evaluate_ref(EditRef("baseline", "baseline"), context)
    edited = evaluate_ref(EditRef("run/hard-trial000@2", "sequential", delta_paths=tuple(paths)), context)
    assert torch.equal(weight, before)
    assert {r["edit_ref"] for r in edited} == {"run/hard-trial000@2"}
    assert edited[0]["ppl_mean"] != pytest.approx(base[0]["ppl_mean"], rel=1e-6)
    assert all(r["source_table"] == "sequential" for r in edited)


@pytest.mark.slow
def test_prefect_flow_publishes_and_resumes(setup) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from editcollapse.orchestration.flows.downstream import downstream_eval
    from editcollapse.stages.downstream.config import DownstreamConfig
    from editcollapse.stages.downstream.pipeline import run_downstream

    config = {  # as a deployment's parameters give it: JSON, validated into the config by Prefect
        "model": str(setup / "model"),
        "edits": "none",
        "tasks": [TASK],
        "limit": 5,
        "include_path": str(setup / "tasks"),
        "ppl_corpus": str(setup / "ppl.json"),
    }
    with prefect_test_harness(server_startup_timeout=180):
        result = downstream_eval(config=config, warehouse=str(setup / "wh-flow"))
    assert {row["n"] for row in result.rows} == {5}
    assert result.plot is not None and result.plot.endswith(".png")
    parts = Warehouse(setup / "wh-flow").parts("downstream")
    stamps = {p: p.stat().st_mtime_ns for p in parts}

    again = run_downstream(  # same parameters: same run id, nothing re-evaluated
        DownstreamConfig(**{**config, "tasks": (TASK,)}), Warehouse(setup / "wh-flow")
    )
    assert again.run_id == result.run_id and again.rows == result.rows
    assert {p: p.stat().st_mtime_ns for p in Warehouse(setup / "wh-flow").parts("downstream")} == stamps


def test_cli_without_prefect(setup, bar_updates) -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app

    result = CliRunner().invoke(
        app,
        [
            "downstream",
            "--model",
            str(setup / "model"),
            "--edits",
            "none",
            "--tasks",
            TASK,
            "--limit",
            "3",
            "--include-path",
            str(setup / "tasks"),
            "--ppl-corpus",
            str(setup / "ppl.json"),
            "-w",
            str(setup / "wh-cli"),
            "--no-prefect",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "baseline" in result.output and "perplexity" in result.output and "figure:" in result.output
    assert bar_updates == [(0, 1), (1, 1)]  # the bar over the models: the baseline only
    rows = Warehouse(setup / "wh-cli").read("downstream").to_pylist()
    assert {(row["metric"], row["n"]) for row in rows} == {("acc", 3), ("perplexity", 3)}


def test_cli_refuses_an_invalid_option_in_one_line(setup) -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app

    result = CliRunner().invoke(app, ["downstream", "--batch-size", "0", "-w", str(setup / "wh-bad"), "--no-prefect"])
    assert result.exit_code == 2 and "batch_size must be at least 1, got 0" in result.output
    assert not (setup / "wh-bad").exists()
