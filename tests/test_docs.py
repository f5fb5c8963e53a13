"""The documentation site builds strictly, its generated reference is complete, and the README stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from editcollapse.cli import app
from editcollapse.warehouse.schemas import SCHEMAS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built by `mkdocs build --strict` from this checkout (its code on the path first)."""
    pytest.importorskip("material", reason="mkdocs-material is in the dev extra: pip install -e '.[dev]'")
    pytest.importorskip("mkdocs_gen_files", reason="mkdocs-gen-files is in the dev extra: pip install -e '.[dev]'")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.update(DISABLE_MKDOCS_2_WARNING="true", NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr[-4000:]}"
    return out


def _command_paths(command, path: str = "editcollapse") -> list[str]:
    """Every command and sub-command of the CLI, as typed: `editcollapse data list`."""
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, f"{path} {name}")
    return paths


def test_schema_page_names_every_table(site: Path) -> None:
    page = (site / "reference" / "schemas" / "index.html").read_text()
    missing = [table for table in SCHEMAS if f'id="{table}"' not in page]
    assert not missing, f"generated schema page lacks tables {missing}"
    for table, schema in SCHEMAS.items():
        absent = [name for name in schema.names if f"<code>{name}</code>" not in page]
        assert not absent, f"generated schema page lacks columns {absent} of {table}"


def test_cli_page_names_every_command(site: Path) -> None:
    page = (site / "reference" / "cli" / "index.html").read_text()
    paths = _command_paths(typer.main.get_command(app))
    assert len(paths) > 10
    missing = [path for path in paths if f"<code>{path}</code>" not in page]
    assert not missing, f"generated CLI page lacks commands {missing}"


def test_readme_is_short_and_for_users() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300, "README.md must stay at most 300 lines; move detail into docs/"
    assert not re.search(r"#\d+", readme), "README.md must not cite issue numbers"
    assert "ARCHITECTURE.md" not in readme, "README.md must not send users to ARCHITECTURE.md"
