"""Integration: a real ``prefect server`` on 127.0.0.1 (private home, free port), the process work
pool and deployments of ``prefect.yaml`` registered with the README's commands, a sweep run
triggered by ``prefect deployment run`` and executed by ``prefect worker start --run-once``; the
flow run's final state, task runs and artifacts are read back through the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from editcollapse.orchestration.ops.server import PrefectServer, stop_process
from editcollapse.warehouse import Warehouse, connect
from tests.sweep_cases import write_files

ROOT = Path(__file__).resolve().parents[1]
POOL = "editcollapse"  # the pool prefect.yaml's deployments name
DEPLOYMENT = "single-edit-sweep/sweep-nightly"


@pytest.mark.slow
def test_worker_runs_deployed_sweep_against_real_server(tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from editcollapse.orchestration.flows.sweep import artifact_key
    from editcollapse.stages.sweep.plan import SweepConfig

    cases_file, corpus = write_files(tmp_path, 3)
    root = tmp_path / "wh"
    config = {"model": "tiny-gpt2", "dataset": str(cases_file), "ppl_corpus": str(corpus), "shard_size": 2}
    run_id = SweepConfig(**config).resolved().run_id  # none given: derived from the parameters, as on schedule
    parameters = {"config": config, "warehouse": str(root), "progress_bar": False}
    # the same run id with other parameters: refused, so that flow run must end Failed
    clashing = {**parameters, "config": {**config, "seed": 1, "run_id": run_id}}
    with PrefectServer(tmp_path / "prefect-home") as server:
        server.cli("work-pool", "create", POOL, "--type", "process")
        server.cli("concurrency-limit", "create", "gpu", "2")
        setup = subprocess.run(
            [sys.executable, "-m", "editcollapse", "setup-prefect", "--pool", "spare"],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=300,
        )  # limit 2 -> 1
        assert setup.returncode == 0 and "'spare' created" in setup.stdout, setup.stdout + setup.stderr
        server.cli("--no-prompt", "deploy", "--all", cwd=ROOT)
        worker_log = tmp_path / "worker.log"
        for params in (parameters, clashing):
            server.cli("deployment", "run", DEPLOYMENT, "--params", json.dumps(params))
            worker = server.spawn(
                "worker", "start", "--pool", POOL, "--run-once", "--limit", "1", log_path=worker_log, cwd=tmp_path
            )
            try:
                worker.wait(timeout=900)
            finally:
                stop_process(worker)

        with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
            deployments = client.read_deployments()
            assert len(deployments) == len(_yaml_deployments())  # every deployment of prefect.yaml
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["sweep-nightly"]))
            )
            manual = [r for r in runs if r.parameters.get("config") == config]
            assert len(manual) == 1, [(r.name, r.state_name) for r in runs]
            flow_run = manual[0]
            assert flow_run.state.is_completed(), (flow_run.state, worker_log.read_text()[-4000:])
            (refused,) = [r for r in runs if r.parameters.get("config") == clashing["config"]]
            assert refused.state.is_failed(), (refused.state, worker_log.read_text()[-4000:])
            assert "exists with other parameters" in refused.state.message
            assert flow_run.work_pool_name == POOL and "gpu" in flow_run.tags
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
            assert sorted(t.name for t in tasks if t.name.startswith("shard-")) == ["shard-00000", "shard-00001"]
            assert all(t.state.is_completed() for t in tasks)
            assert all("gpu" in t.tags for t in tasks if t.name.startswith("shard-"))  # under the gpu limit
            assert client.read_concurrency_limit_by_tag("gpu").concurrency_limit == 1
            assert client.read_work_pool("spare").type == "process"
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
            )
            keys = {a.key: a for a in artifacts}
            assert {artifact_key(p, run_id) for p in ("sweep-progress", "sweep-summary", "sweep-histogram")} <= set(
                keys
            )
            assert "n_collapsed" in str(keys[artifact_key("sweep-summary", run_id)].data)

    assert not server.healthy()  # torn down
    rows = connect(Warehouse(root)).execute("SELECT count(DISTINCT case_id), count(*) FROM ppl").fetchone()
    assert rows == (3, 3)


def _yaml_deployments() -> list[dict]:
    import yaml

    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
