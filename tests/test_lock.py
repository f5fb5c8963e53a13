"""The environment the tests run in is the one requirements.lock records (scripts/bootstrap.sh installs it)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
INSTALLERS = {"pip", "setuptools", "wheel", "uv"}  # the tools that install the lock, not part of it
PROJECT = "editcollapse"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin (name==version)"
            pins[_normalise(name)] = version
    return pins


def _installed() -> dict[str, str]:
    return {
        _normalise(dist.metadata["Name"]): dist.version.split("+", 1)[0]  # torch's "+cpu" label
        for dist in metadata.distributions()
    }


def test_installed_versions_are_the_locked_ones() -> None:
    installed = _installed()
    if PROJECT not in installed:
        pytest.skip("editcollapse is not installed in this environment (run scripts/bootstrap.sh)")
    differ = {
        name: (installed.get(name, "not installed"), version)
        for name, version in _locked().items()
        if installed.get(name) != version
    }
    assert not differ, (
        "the environment differs from requirements.lock (installed, locked): "
        f"{differ}; re-create it with scripts/bootstrap.sh, or refresh the lock with scripts/lock.sh"
    )


def test_every_installed_package_is_locked() -> None:
    installed = _installed()
    if PROJECT not in installed:
        pytest.skip("editcollapse is not installed in this environment (run scripts/bootstrap.sh)")
    unlocked = sorted(set(installed) - set(_locked()) - INSTALLERS - {PROJECT})
    assert not unlocked, f"installed but not in requirements.lock: {unlocked}; refresh it with scripts/lock.sh"
