"""The end-to-end study flow on a tiny model: every stage a subflow of one flow run, with artifacts,
all tables in one warehouse (an fsspec ``memory://`` URL), the analysis at the end; and the
``gpu`` slot flow code takes is the tag limit tasks use."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid

import pytest

from tests.sweep_cases import write_files

SUBFLOWS = {
    "single-edit-sweep",
    "select-hardcf",
    "sequential-editing",
    "hardedit-generate",
    "hardedit-filter",
    "downstream-eval",
    "analyse-study",
}


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):  # the shared CPU can be slow to start it
        yield


def _candidates() -> str:
    return json.dumps(
        [
            {"prompt": "Nintendo is based in", "subject": "Nintendo", "target_new": "Lisbon", "ground_truth": "Kyoto"},
            {"prompt": "Sony's headquarters are in", "subject": "Sony", "target_new": "Lagos", "ground_truth": "Tokyo"},
        ]
    )


@pytest.mark.slow
def test_study_runs_every_stage_as_a_subflow(harness, tmp_path, capsys, monkeypatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from editcollapse.orchestration.flows.study import editcollapse_study
    from editcollapse.stages.downstream.catalog import LASTWORD
    from editcollapse.stages.study import DownstreamPart, HardEditPart, SequentialPart, StudyConfig
    from editcollapse.warehouse import Warehouse, connect
    from tests.test_hardedit_generate import FakeOpenAI

    monkeypatch.setenv("COLUMNS", "200")  # room for each progress bar's label and count
    cases_file, corpus = write_files(tmp_path, 6)
    root = f"memory://study-{uuid.uuid4().hex[:8]}"
    with FakeOpenAI([("ok", _candidates())]) as llm:
        config = StudyConfig(
            model="tiny-gpt2",
            method="rome",
            dataset=str(cases_file),
            shard_size=3,
            ppl_corpus=str(corpus),
            threshold=1000.0,
            sequential=SequentialPart(n_edits=2, trials=1),
            hardedit=HardEditPart(backend="openai", calls=1, model="fake-gpt", base_url=llm.base_url),
            downstream=DownstreamPart(tasks=(LASTWORD,), limit=3, k=1),
        )
        state = editcollapse_study(config=config, warehouse=root, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert [line["step"] for line in result.steps] == [
        "sweep",
        "hardcf",
        "sequential",
        "hardedit-generate",
        "hardedit-filter",
        "downstream",
        "analysis",
    ]
    assert all(line["state"] == "completed" for line in result.steps), result.steps
    # each stage's progress bar, one after another, ends full (on stderr; its last state is printed
    # once when the output is not a terminal)
    bars = [line for line in capsys.readouterr().err.splitlines() if "━" in line]
    for label, count in (
        ("sweep ", "6/6"),  # cases
        ("sequential ", "4/4"),  # 2 trajectories × 2 edits
        ("HardEdit generation", "1/1"),  # calls
        ("HardEdit filter", "2/2"),  # candidates × reference models
        ("downstream tiny-gpt2", "3/3"),  # baseline, most and least damaging edit
    ):
        assert any(line.startswith(label) and count in line for line in bars), (label, bars)

    # one tree: every stage is a child flow run of the study's run, with its own artifacts
    with get_client(sync_client=True) as client:
        study_run = client.read_flow_run(state.state_details.flow_run_id)
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[study_run.id]))
        )
        names = {client.read_flow(run.flow_id).name for run in children}
        assert names == SUBFLOWS and all(run.state.is_completed() for run in children)
        keys = {artifact.key for artifact in client.read_artifacts() if artifact.key}
    for key in (
        "study-stages-",
        "study-progress-",
        "sweep-progress-",
        "sweep-summary-",
        "sequential-progress-",
        "hardcf-",
        "sequential-summary-",
        "downstream-scores-",
        "analysis-single-edit",
        "analysis-sequential-figures",
    ):
        assert any(k.startswith(key) for k in keys), (key, sorted(keys))

    # every stage wrote to the one warehouse URL
    store = Warehouse(root)
    session = connect(store)
    counts = dict(
        session.execute(
            "SELECT 'ppl', count(*) FROM ppl UNION ALL SELECT 'hardcf', count(*) FROM hardcf "
            "UNION ALL SELECT 'sequential', count(*) FROM sequential "
            "UNION ALL SELECT 'candidates', count(*) FROM hardedit_candidates "
            "UNION ALL SELECT 'hardedit', count(*) FROM hardedit "
            "UNION ALL SELECT 'downstream', count(DISTINCT edit_ref) FROM downstream"
        ).fetchall()
    )
    assert counts["ppl"] == 6 + 2  # the sweep's six cases and the two HardEdit candidates
    assert counts["sequential"] == 2 * 3  # hard and normal, steps 0..2
    assert counts["candidates"] == 2 and counts["hardedit"] == 2
    assert counts["downstream"] == 3  # baseline, most and least damaging edit
    stages = dict(session.execute("SELECT stage, count(*) FROM runs GROUP BY stage").fetchall())
    assert {"single_edit_sweep", "sequential", "hardedit_generation", "hardedit_filter"} <= set(stages)
    analysis = result.results["analysis"]
    assert len(analysis.tables["single_edit"]) == 2  # the sweep and the HardEdit filter's sweep
    assert all(f.endswith(".png") for section in analysis.figures.values() for f in section)


@pytest.mark.slow
def test_gpu_slot_occupies_the_gpu_tag_limit(harness) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from editcollapse.orchestration.ops.concurrency import GPU_LIMIT, gpu_slot
    from editcollapse.orchestration.ops.setup import setup_server

    @flow
    def without_a_limit() -> str:
        with gpu_slot():
            return "ran"

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(GPU_LIMIT)  # as on a server nobody set up
    said: list[str] = []
    listener = logging.Handler()
    listener.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("prefect").addHandler(listener)
    try:
        assert without_a_limit() == "ran"
    finally:
        logging.getLogger("prefect").removeHandler(listener)
    assert said and not [line for line in said if "do not exist" in line]  # no warning where there is no limit

    setup_server(pool="gpu-test", gpu_limit=1)

    def active() -> int:
        with get_client(sync_client=True) as client:
            return client.read_global_concurrency_limit_by_name(GPU_LIMIT).active_slots

    @flow
    def holds_the_gpu() -> tuple[int, int]:
        with gpu_slot():
            inside = active()
        with gpu_slot(enabled=False):
            disabled = active()
        return inside, disabled

    assert holds_the_gpu() == (1, 0) and active() == 0


def test_every_model_task_carries_the_gpu_tag() -> None:
    from editcollapse.orchestration.flows.sequential import trajectory_task
    from editcollapse.orchestration.ops.setup import GPU_TAG
    from editcollapse.orchestration.tasks.downstream import evaluate_ref_task
    from editcollapse.orchestration.tasks.sweep import edit_shard_task

    for task in (edit_shard_task, trajectory_task, evaluate_ref_task):
        assert GPU_TAG in task.tags, task.name


@pytest.mark.slow
def test_a_failed_stage_skips_its_dependants_and_fails_the_study(harness, tmp_path) -> None:
    from editcollapse.orchestration.flows.study import editcollapse_study
    from editcollapse.stages.study import StudyConfig

    config = StudyConfig(
        model="tiny-gpt2", dataset=str(tmp_path / "missing.json"), stages=("sweep", "hardcf", "analysis")
    )
    state = editcollapse_study(config=config, warehouse=str(tmp_path / "wh"), return_state=True)
    assert state.is_failed() and "sweep" in state.message
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = [
            a
            for a in client.read_artifacts()
            if a.key and a.key.startswith("study-stages-") and a.flow_run_id == state.state_details.flow_run_id
        ]
    (table,) = artifacts
    lines = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(line["step"], line["state"]) for line in lines] == [
        ("sweep", "Failed"),
        ("hardcf", "skipped"),
        ("analysis", "completed"),
    ]


@pytest.mark.slow
def test_the_study_command_ends_with_the_report_and_the_most_damaging_edits(harness, tmp_path) -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app

    cases_file, corpus = write_files(tmp_path, 3)
    warehouse = tmp_path / "wh"
    command = ["study", "--model", "tiny-gpt2", "--dataset", str(cases_file), "--ppl-corpus", str(corpus)]
    command += ["--stage", "sweep", "--stage", "analysis", "-w", str(warehouse)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "most damaging edits of tiny-gpt2 / rome" in result.output
    assert "hardedit:cases/0" in result.output and "Eiffel" in result.output  # a swept case in the table
    report = result.output.split("report: ", 1)[1].split(" (open it", 1)[0].strip()
    assert report == str(warehouse / "analysis" / "report.html") and (warehouse / "analysis" / "report.html").is_file()
