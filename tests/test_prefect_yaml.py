"""Every deployment in prefect.yaml names an importable flow and parameters that flow accepts."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule

ROOT = Path(__file__).resolve().parents[1]
PROJECT = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = PROJECT["deployments"]


def _load_flow(entrypoint: str) -> Flow:
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"_deployment_{name}", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flow = getattr(module, name)
    assert isinstance(flow, Flow), f"{entrypoint} is not a Prefect flow"
    return flow


def test_project_header() -> None:
    assert PROJECT["name"] == "editcollapse"
    assert len({d["name"] for d in DEPLOYMENTS}) == len(DEPLOYMENTS), "deployment names must be unique"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_resolves(deployment: dict) -> None:
    flow = _load_flow(deployment["entrypoint"])
    parameters = deployment.get("parameters", {})
    validated = flow.validate_parameters(parameters)
    assert set(parameters) <= set(validated)
    for name, value in parameters.items():
        _assert_kept_as_given(validated[name], value, name)
    assert deployment["work_pool"]["name"] == "editcollapse"
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])


def _assert_kept_as_given(validated, given, where: str) -> None:
    """A config (or a config inside one) kept every key of its mapping in the YAML as a field, with
    the value given (lists as tuples)."""
    if not dataclasses.is_dataclass(validated):
        assert validated == (tuple(given) if isinstance(given, list) else given), where
        return
    assert set(given) <= {field.name for field in dataclasses.fields(validated)}, (where, set(given))
    for key, value in given.items():
        _assert_kept_as_given(getattr(validated, key), value, f"{where}.{key}")


def test_every_flow_of_the_study_has_a_deployment() -> None:
    """Every Prefect flow defined under editcollapse/orchestration/flows/ is some deployment's entrypoint."""
    import importlib

    flows = set()
    for path in sorted((ROOT / "editcollapse" / "orchestration" / "flows").glob("*.py")):
        module = importlib.import_module(f"editcollapse.orchestration.flows.{path.stem}")
        flows |= {
            f"editcollapse/orchestration/flows/{path.name}:{name}"
            for name, value in vars(module).items()
            if isinstance(value, Flow) and value.__module__ == module.__name__
        }
    deployed = {d["entrypoint"] for d in DEPLOYMENTS}
    assert flows - deployed == set(), "flows without a deployment"
    assert {
        "editcollapse/orchestration/flows/study.py:editcollapse_study",
        "editcollapse/orchestration/flows/analysis.py:analyse_study",
    } <= deployed


def test_recurring_deployments_have_schedules_and_model_stages_the_gpu_tag() -> None:
    scheduled = {d["name"] for d in DEPLOYMENTS if d.get("schedules")}
    assert {
        "sweep-nightly",
        "hardcf-nightly",
        "hardedit-generate-weekly",
        "hardedit-filter-weekly",
        "analysis-nightly",
        "study-weekly",
    } <= scheduled
    for deployment in DEPLOYMENTS:
        if any(
            stage in deployment["entrypoint"]
            for stage in (
                "sweep.py",
                "screen.py",
                "sequential.py",
                "hardedit.py",
                "downstream.py",
                "study.py",
                "mend.py",
            )
        ):
            assert "gpu" in deployment["tags"], deployment["name"]


def test_task_runner_specs() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from editcollapse.orchestration.runners import make_task_runner

    assert isinstance(make_task_runner("local"), ThreadPoolTaskRunner)
    assert make_task_runner("dask:2:4GiB").cluster_kwargs == {
        "threads_per_worker": 1,
        "processes": True,
        "memory_limit": "4GiB",
        "n_workers": 2,
    }
    assert make_task_runner("dask").cluster_kwargs["memory_limit"] == "auto"  # an equal share per worker
    remote = make_task_runner("dask:tcp://10.0.0.5:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    for bad in ("dask:0", "dask:2:lots", "threads:0", "ray"):
        with pytest.raises(ValueError, match="task runner"):
            make_task_runner(bad)
