"""Where flow code runs: inside a Prefect flow or task run, or as a plain call (``flow.fn(...)``,
tests, scripts). Code that logs or publishes artifacts asks here, so it works both ways."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.context import FlowRunContext, TaskRunContext


def in_prefect_run() -> bool:
    """True inside a Prefect flow run or task run."""
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run (its lines show in the UI), else the standard
    library logger ``name`` (pass the caller's ``__name__``)."""
    return get_run_logger() if in_prefect_run() else logging.getLogger(name)
