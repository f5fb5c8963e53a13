"""Every fenced code block of README.md and docs/**/*.md runs, or is checked against the real code
(docs/contributing.md, Docs): Python runs against a small warehouse, each `editcollapse` command line
parses with the real CLI (its `sql` queries run), SQL runs, hparams YAML loads with its method's class.
A block that cannot run here says why in a `<!-- not-run: … -->` line right above its fence."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import yaml
from typer.exceptions import Exit, TyperException
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.editors.api import hparams_path, method_spec
from editcollapse.warehouse import Warehouse, build_catalog, connect
from tests.analysis_warehouse import fill

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.+?)\s*-->$")
SHELL = {"", "bash", "console", "text", "sh"}
TINY_MODEL = {"smollm2-135m": "tiny-gpt2"}  # model-loading examples run on the tiny random-weight model
WRAPPERS = {"time", "/usr/bin/time", "-v"}  # words that may stand before `editcollapse` on a line
PLACEHOLDER = re.compile(r"<\w[\w ]*>")  # `<data root>`: a value to fill in, not a redirection
OPERATORS = {"|", "||", "&", "&&", ";", "<", ">", ">>", "2>", "(", ")"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    not_run: str | None  # the reason its marker gives

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    lines, found, index = page.read_text().splitlines(), [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, end = len(opening["indent"]), index + 1
        while lines[end].strip() != "```":
            end += 1
        marker = NOT_RUN.match(lines[index - 1].strip()) if index else None
        body = "\n".join(line[indent:] for line in lines[index + 1 : end])
        found.append(Block(page, index + 1, opening["lang"], body, marker["reason"] if marker else None))
        index = end + 1
    return found


BLOCKS = [block for page in PAGES for block in read_blocks(page)]


def params(*langs: str) -> list:
    """The blocks of these languages as test parameters; a not-run block is a skip that says why."""
    return [
        pytest.param(
            b, id=b.name, marks=[pytest.mark.skip(reason=f"not-run ({b.name}): {b.not_run}")] if b.not_run else []
        )
        for b in BLOCKS
        if b.lang in langs
    ]


@pytest.fixture(scope="session")
def warehouse_root(tmp_path_factory) -> Path:
    """A small warehouse of real rows of every table (tests/analysis_warehouse.py)."""
    root = tmp_path_factory.mktemp("docs") / "warehouse"
    fill(Warehouse(root))
    build_catalog(root)  # catalog.duckdb, which the DuckDB example opens
    return root


@pytest.fixture
def in_folder(tmp_path, warehouse_root, monkeypatch) -> Path:
    """A fresh working folder where `warehouse` (the examples' relative path) is the test warehouse."""
    (tmp_path / "warehouse").symlink_to(warehouse_root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDITCOLLAPSE_WAREHOUSE", raising=False)
    return tmp_path


@pytest.mark.parametrize("block", params("python"))
def test_python_example_runs(block: Block, in_folder: Path) -> None:
    source = block.text
    for name, tiny in TINY_MODEL.items():
        source = source.replace(f'"{name}"', f'"{tiny}"')
    exec(compile(source, block.name, "exec"), {"__name__": "__docs__"})


def shell_lines(text: str) -> list[tuple[str, list[str]]]:
    """A shell block's command lines, `\\` continuations and quotes open across lines joined; in a
    console block (`$ ` prompts) each command with the output lines printed after it."""
    lines = text.replace("\\\n", " ").splitlines()
    console = text.lstrip().startswith("$ ")
    paired: list[tuple[str, list[str]]] = []
    for line in lines:
        if paired and not closed(paired[-1][0]):
            paired[-1] = (f"{paired[-1][0]}\n{line}", [])
        elif console and not line.startswith("$ "):
            paired[-1][1].append(line)
        else:
            paired.append((line.removeprefix("$ ") if console else line, []))
    return paired


def words_of(line: str) -> list[str]:
    lexer = shlex.shlex(PLACEHOLDER.sub("placeholder", line), posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    return list(lexer)


def closed(line: str) -> bool:
    try:
        words_of(line)
    except ValueError:  # a quote still open
        return False
    return True


def shell_commands(line: str) -> tuple[list[list[str]], list[str]]:
    """The commands of a shell line as words, split at pipes, redirections, `&` and `;`, comments
    and `…` (options left out) dropped, `<data root>` placeholders a word; and the files it
    redirects output to."""
    try:
        words = words_of(line)
    except ValueError:  # an unclosed quote: not a shell line (a diagram, an output line)
        return [], []
    commands, written, current = [], [], []
    for previous, word in zip([None, *words], [*words, ";"]):
        if word in OPERATORS:
            commands.append(current) if current else None
            current = []
        elif previous in (">", ">>"):
            written.append(word)
        elif word != "…":
            current.append(word)
    return commands, written


def editcollapse_arguments(words: list[str]) -> list[str] | None:
    """The arguments after `editcollapse` when the command line runs it, else None."""
    for index, word in enumerate(words):
        if word == "editcollapse":
            return words[index + 1 :]
        if not (re.match(r"^[A-Z_][A-Z0-9_]*=", word) or word in WRAPPERS):
            return None
    return None


def parse(arguments: list[str]) -> None:
    """Parse a command line with the real CLI: its commands exist, it accepts every option and
    argument, each value converts; no command runs. `[--flag]` (optional) counts as the flag."""
    command, path = typer.main.get_command(app), ["editcollapse"]
    while hasattr(command, "commands") and arguments and not arguments[0].startswith("-"):
        command = command.commands.get(arguments[0])
        path.append(arguments.pop(0))
        assert command is not None, f"no command {' '.join(path)!r}"
    try:
        command.make_context(" ".join(path), [a.strip("[]") for a in arguments])
    except Exit:  # --help, --version
        pass


def without_warehouse(arguments: list[str]) -> list[str]:
    kept, skip = [], False
    for argument in arguments:
        if skip or argument in ("-w", "--warehouse"):
            skip = not skip
            continue
        kept.append(argument)
    return kept


@pytest.mark.parametrize("block", params(*SHELL))
def test_shell_example_commands_exist(block: Block, in_folder: Path, warehouse_root: Path) -> None:
    for line, printed in shell_lines(block.text):
        commands, written = shell_commands(line)
        for words in commands:
            check_command(block, words, "\n".join(printed), warehouse_root)
        for name in written:  # what a later line of the block reads (an hparams file …) is there
            (in_folder / name).touch()


def check_command(block: Block, words: list[str], printed: str, warehouse_root: Path) -> None:
    """`bash scripts/…` names a file; `editcollapse …` parses (or fails as the output shown says);
    `editcollapse sql` runs against the test warehouse."""
    if words[:1] == ["bash"] and len(words) > 1 and words[1].startswith("scripts/"):
        assert (ROOT / words[1]).is_file(), f"{block.name}: no file {words[1]}"
    arguments = editcollapse_arguments(words)
    if arguments is None:
        return
    shown = f"`editcollapse {shlex.join(arguments)}`"
    try:
        parse(list(arguments))
    except TyperException as error:
        if f"error: {error.format_message()}" not in printed:
            pytest.fail(f"{block.name}: {shown}: {error.format_message()}")
    except AssertionError as error:
        pytest.fail(f"{block.name}: {shown}: {error}")
    if arguments[:1] == ["sql"] and "…" not in " ".join(arguments):
        result = CliRunner().invoke(app, [*without_warehouse(arguments), "-w", str(warehouse_root)])
        assert result.exit_code == 0, f"{block.name}: {shown}: {result.output}"


@pytest.mark.parametrize("block", params("sql"))
def test_sql_example_runs(block: Block, warehouse_root: Path) -> None:
    statements = [s for s in re.sub(r"--[^\n]*", "", block.text).split(";") if s.strip()]
    assert statements
    with connect(warehouse_root) as db:
        for statement in statements:
            db.sql(statement).fetchall()


@pytest.mark.parametrize("block", params("yaml"))
def test_yaml_example_loads(block: Block) -> None:
    data = yaml.safe_load(block.text)
    editor_page = re.fullmatch(r"docs/editors/([\w-]+)\.md", str(block.page.relative_to(ROOT)))
    named = isinstance(data, dict) and "alg_name" in data
    method = str(data["alg_name"]).lower() if named else editor_page and editor_page[1]
    if not method:
        return  # not an hparams file: loading it as YAML is the check
    packaged = yaml.safe_load(hparams_path(method, "tiny-gpt2").read_text())
    method_spec(method).hparams_class().from_mapping({**packaged, **data}, source=block.name)


def test_every_not_run_marker_stands_right_above_a_fence() -> None:
    for page in PAGES:
        lines = page.read_text().splitlines()
        for index, line in enumerate(lines[:-1]):
            if "not-run:" in line and line.lstrip().startswith("<!--"):
                assert NOT_RUN.match(line.strip()) and FENCE.match(lines[index + 1]), f"{page.name}:{index + 1}"
