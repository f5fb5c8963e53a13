"""Every deployment in prefect.yaml names an importable flow and parameters that flow accepts."""

from __future__ import annotations

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
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    assert set(deployment.get("parameters", {})) <= set(validated)
    assert deployment["work_pool"]["name"] == "editcollapse"
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
