"""The Prefect flows (ephemeral mode, private PREFECT_HOME from conftest): the sweep fans out one
task per shard, resumes by run id, publishes its artifacts; HardCF runs as a flow too."""

from __future__ import annotations

import json

import pytest

from editcollapse.warehouse import Warehouse, connect
from tests.sweep_cases import write_files


@pytest.fixture(autouse=True)
def _patient_ephemeral_server(monkeypatch) -> None:
    # The ephemeral API server gets 20 s to start by default: too little on a busy 2-core machine.
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def test_sweep_flow_maps_shards_resumes_and_publishes_artifacts(tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from editcollapse.orchestration.flows.hardcf import select_hardcf
    from editcollapse.orchestration.flows.sweep import artifact_key, single_edit_sweep
    from editcollapse.stages.hardcf.config import HardCFConfig
    from editcollapse.stages.sweep.plan import SweepConfig

    cases_file, corpus = write_files(tmp_path, 3)
    root = str(tmp_path / "wh")
    config = dict(model="tiny-gpt2", method="rome", dataset=str(cases_file), shard_size=2, ppl_corpus=str(corpus))
    # a dict, as a deployment or the UI passes it: Prefect validates it into a SweepConfig
    state = single_edit_sweep(config=config, warehouse=root, progress_bar=False, return_state=True)
    summary = state.result()
    assert (summary.n_cases, summary.n_errors, summary.n_invalid) == (3, 0, 1)
    store = Warehouse(root)
    assert connect(store).execute("SELECT count(DISTINCT case_id), count(*) FROM ppl").fetchone() == (3, 3)

    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).name == f"sweep tiny-gpt2 · rome · {cases_file}"
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
        assert sorted(t.name for t in tasks if t.name.startswith("shard-")) == ["shard-00000", "shard-00001"]
        keys = {artifact.key: artifact for artifact in client.read_artifacts()}
        run_id = summary.run_id
        assert artifact_key("sweep-progress", run_id) in keys
        table = keys[artifact_key("sweep-summary", run_id)]
        assert "n_collapsed" in str(table.data)
        histogram = keys[artifact_key("sweep-histogram", run_id)]
        counts = [line.split("|")[3].strip() for line in histogram.data.splitlines() if line.startswith("| ")]
        assert "log10 ME-PPL" in histogram.data and sum(int(c) for c in counts if c.isdigit()) == 3

    # the same parameters resume the same run: no shard recomputed, no row added
    parts = {p: p.stat().st_mtime_ns for p in store.parts("edits")}
    again = single_edit_sweep(SweepConfig(**config), warehouse=root, progress_bar=False)
    assert again.run_id == summary.run_id and again.n_cases == 3
    assert {p: p.stat().st_mtime_ns for p in store.parts("edits")} == parts
    # the run's id with other parameters: refused, and the flow run is Failed (a worker reports it so)
    refused = single_edit_sweep(
        SweepConfig(**{**config, "seed": 1}, run_id=summary.run_id),
        warehouse=root,
        progress_bar=False,
        return_state=True,
    )
    assert refused.is_failed() and "exists with other parameters" in refused.message

    selection = select_hardcf(config=HardCFConfig(threshold=0.0, output=str(tmp_path / "hardcf.json")), warehouse=root)
    assert selection.n_hard_cases == 3  # every edited model's ME-PPL exceeds 0
    assert len(json.loads((tmp_path / "hardcf.json").read_text())) == 3
