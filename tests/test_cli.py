"""The command line lists its commands and the known models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from editcollapse.cli import app, main
from editcollapse.models.loading import ModelNotAvailable


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


def run_main(arguments: list[str], capsys) -> tuple[int, str, str]:
    """The console entry point in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def assert_one_error_line(code: int, err: str, *expected: str) -> None:
    """Exit code 2 and one line ``error: <what> — <how to fix>`` naming every ``expected``."""
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and " — " in err, err
    for text in expected:
        assert text in err, err


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A fresh editcollapse cache and HuggingFace cache (no trained MEND network, no cached hub model)."""
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("EDITCOLLAPSE_DEBUG", raising=False)


TINY_SWEEP = ["sweep", "--model", "tiny-gpt2", "--ppl-corpus", "embedded-50", "--no-prefect"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["sweep", "--model", "no-such-model", "--no-prefect"], ["unknown model 'no-such-model'", "smollm2-135m"]),
        ([*TINY_SWEEP, "--method", "no-such-method"], ["unknown editing method 'no-such-method'", "rome"]),
        ([*TINY_SWEEP, "--dataset", "no-such-data"], ["unknown data source 'no-such-data'", "geofacts"]),
        ([*TINY_SWEEP, "--dataset", "/no/such/file.json"], ["unknown data source '/no/such/file.json'"]),
        ([*TINY_SWEEP, "--ppl-corpus", "no-such-corpus"], ["unknown perplexity corpus 'no-such-corpus'"]),
        ([*TINY_SWEEP, "--method", "mend"], ["no trained MEND network", "editcollapse mend train"]),
        (["sweep", "--model", "someone/not-cached", "--no-prefect"], ["'someone/not-cached'", "hf download"]),
        (
            ["sequential", "--model", "tiny-gpt2", "--dataset", "geofacts", "--hard-source", "/no/hard.json"],
            ["/no/hard.json does not exist"],
        ),
        (
            ["hardedit", "generate", "--model", "no-such-model", "--no-prefect"],
            ["unknown model 'no-such-model'", "smollm2-135m"],
        ),
        (["sweep", "--limit", "0"], ["--limit", "editcollapse sweep --help"]),
        (["hardedit", "filter", "--limit", "0"], ["--limit", "editcollapse hardedit filter --help"]),
        (["downstream", "--limit", "0"], ["--limit", "editcollapse downstream --help"]),
        (["study", "--limit", "0"], ["--limit", "editcollapse study --help"]),
        (["sweep", "--no-such-option"], ["--no-such-option", "editcollapse sweep --help"]),
        (["sql", "SELECT 1"], ["is not a warehouse", "editcollapse sweep -w"]),
        (["hardcf", "--no-prefect"], ["is not a warehouse"]),
        (["analyse", "--no-prefect"], ["is not a warehouse"]),
    ],
)
def test_a_user_error_is_one_line_before_anything_is_written(
    arguments, expected, own_cache, tmp_path, monkeypatch, capsys
) -> None:
    """Each kind of mistake: exit code 2, one line saying what is wrong and how to fix it, and no
    warehouse made (the preflight refuses it before a ``runs`` row)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    warehouse = tmp_path / "wh"
    code, _, err = run_main([*arguments, "-w", str(warehouse)], capsys)
    assert_one_error_line(code, err, *expected)
    assert not warehouse.exists()


def test_a_group_with_no_command_prints_its_help_only(capsys) -> None:
    code, out, err = run_main(["hardedit"], capsys)
    assert code == 2 and "filter" in out + err and "error:" not in out + err


def test_debug_shows_the_traceback(own_cache, capsys) -> None:
    with pytest.raises(ModelNotAvailable, match="unknown model"):
        main(["sweep", "--model", "no-such-model", "--no-prefect", "--debug"])


def test_a_bug_is_one_line_naming_the_log_with_its_traceback(own_cache, monkeypatch, capsys) -> None:
    def broken(model) -> bool:
        raise RuntimeError("a bug in the registry")

    monkeypatch.setattr("editcollapse.models.registry.available_offline", broken)
    code, _, err = run_main(["models"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: unexpected RuntimeError: a bug in the registry — the traceback is in "), err
    log = Path(err.split("the traceback is in ")[1].split(";")[0])
    assert "Traceback" in log.read_text() and "a bug in the registry" in log.read_text()


def all_commands() -> list[list[str]]:
    """The command path of every command, sub-commands included (``["hardedit", "filter"]`` …)."""
    import typer.main

    def walk(group, path: list[str]) -> list[list[str]]:
        found = []
        for name, command in group.commands.items():
            found += walk(command, [*path, name]) if hasattr(command, "commands") else [[*path, name]]
        return found

    return walk(typer.main.get_command(app), [])


def test_every_command_has_an_example_in_its_help() -> None:
    commands = all_commands()
    assert ["sweep"] in commands and ["hardedit", "filter"] in commands and ["mend", "train"] in commands
    for command in commands:
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "Example: editcollapse " in result.output, (command, result.output)


def test_stage_commands_share_their_options() -> None:
    """The same option has one meaning everywhere: --prefect defaults to Prefect on every stage
    command (analyse included) and -w is the warehouse (--limit 0 is refused: see above)."""
    import typer.main

    stages = [["sweep"], ["hardcf"], ["sequential"], ["downstream"], ["analyse"], ["hardedit", "filter"]]
    stages += [["hardedit", "generate"], ["mend", "train"]]
    root = typer.main.get_command(app)
    for path in stages:
        command = root
        for name in path:
            command = command.commands[name]
        parameters = {parameter.name: parameter for parameter in command.params}
        assert parameters["prefect"].default is True, path
        if "warehouse" in parameters:
            assert "-w" in parameters["warehouse"].opts, path


@pytest.mark.slow
def test_an_unknown_model_in_prefect_mode_is_one_line_and_starts_nothing(tmp_path) -> None:
    """The default (Prefect) mode, through the installed entry point: one line, exit code 2, no
    Prefect flow run (nothing of Prefect's on stderr) and no warehouse, so no ``runs`` row."""
    import subprocess
    import sys

    warehouse = tmp_path / "wh"
    command = [sys.executable, "-m", "editcollapse", "sweep", "--model", "no-such-model", "-w", str(warehouse)]
    env = {**os.environ, "EDITCOLLAPSE_CACHE": str(tmp_path / "cache"), "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert_one_error_line(done.returncode, done.stderr, "unknown model 'no-such-model'")
    assert "prefect" not in done.stderr.lower() and not warehouse.exists()
