"""Where flow code runs: inside a Prefect flow or task run, or as a plain call (``flow.fn(...)``,
tests, scripts). Code that logs or publishes artifacts asks here, so it works both ways."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from prefect import get_run_logger
from prefect.context import FlowRunContext, TaskRunContext


def in_prefect_run() -> bool:
    """True inside a Prefect flow run or task run."""
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run (its lines show in the UI), else the standard
    library logger ``name`` (pass the caller's ``__name__``)."""
    return get_run_logger() if in_prefect_run() else logging.getLogger(name)


def config_run_name(template: str) -> Callable[[], str]:
    """A ``flow_run_name`` that formats ``template`` with the fields of the run's ``config``
    parameter, whether Prefect holds it as the config dataclass or as its JSON form (a deployment)."""

    def name() -> str:
        from prefect.runtime import flow_run

        config = flow_run.parameters.get("config")
        fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config or {})
        try:
            return template.format(**fields)
        except (KeyError, IndexError):  # a config without a field the name shows: Prefect's own name
            return flow_run.name

    return name
