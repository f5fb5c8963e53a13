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


def test_piped_output_keeps_wide_tables_whole(monkeypatch) -> None:
    import io
    import sys

    from rich.table import Table

    from editcollapse.cli.formatting import PIPED_WIDTH, console

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    out = console()
    assert out.width == PIPED_WIDTH
    table = Table()
    for name in (
        "group",
        "trial",
        "baseline_ppl",
        "final_ppl",
        "baseline_extra_ppl",
        "final_extra_ppl",
        "collapsed_at",
        "final_all_success",
        "cumulative_fro",
        "cumulative_spectral",
        "errors",
    ):
        table.add_column(name)
    table.add_row("normal", "2", "167.3", "174.7", "189.2", "196.6", "—", "1", "109.4", "48.47", "0")
    out.print(table)
    text = sys.stdout.getvalue()
    assert "cumulative_spectral" in text and "normal" in text and "…" not in text


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"editcollapse {version('editcollapse')}\n"


def test_an_input_error_is_one_line_and_exit_code_2_unless_debug(tmp_path) -> None:
    """The console entry point: no traceback for an error the user fixes; ``--debug`` shows it."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "editcollapse", "sweep", "--model", "nosuch-model", "--no-prefect"]
    command += ["-w", str(tmp_path / "wh")]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr, plain.stderr
    assert plain.stderr.splitlines()[-1].startswith("error: unknown model 'nosuch-model': use one of")
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ModelNotAvailable" in debug.stderr
