"""The command line lists its commands and the known models."""

from __future__ import annotations

from typer.testing import CliRunner

from editcollapse.cli import app


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "models" in result.output


def test_models_lists_known_models() -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("smollm2-135m", "gpt2-xl", "gpt-j-6b", "llama-2-7b", "tiny-llama"):
        assert name in result.output
