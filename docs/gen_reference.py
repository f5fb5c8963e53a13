"""Write the reference pages at build time (mkdocs-gen-files), so they cannot drift from the code.

- ``reference/schemas.md``: every warehouse table of ``editcollapse.warehouse.schemas.SCHEMAS``, every
  column with its Arrow type and nullability, the hive partition columns, and the column's comment
  (its field metadata when it has any, else the ``# …`` comment on its line in ``schemas.py``).
- ``reference/cli.md``: every command and sub-command of the Typer app ``editcollapse.cli:app``, with
  its help and a table of its parameters (names, type, default, help).

mkdocs-gen-files runs this file as a script during ``mkdocs build``; the page builders are pure
functions of the modules they document.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
from collections.abc import Iterator
from enum import Enum
from types import ModuleType
from typing import Any

import mkdocs_gen_files
import pyarrow as pa
import typer.main

from editcollapse.cli import app
from editcollapse.warehouse import schemas


def _cell(text: str) -> str:
    """``text`` made safe for one Markdown table cell (one line, no column breaks)."""
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """Help text as Markdown that shows it verbatim: ``<warehouse>`` must not become an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _line_comments(source: str) -> dict[int, str]:
    """The trailing ``# …`` comment of each source line that has one, by line number."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def _column_comments(module: ModuleType) -> dict[str, dict[str, str]]:
    """Per module-level variable, the comment on each column's line: ``("name", type)`` or ``"name": type``."""
    source = inspect.getsource(module)
    comments = _line_comments(source)
    found: dict[str, dict[str, str]] = {}
    for statement in ast.parse(source).body:
        target = getattr(statement, "target", None) or (getattr(statement, "targets", None) or [None])[0]
        if not isinstance(target, ast.Name):
            continue
        columns = found.setdefault(target.id, {})
        for node in ast.walk(statement):
            keys = node.elts[:1] if isinstance(node, ast.Tuple) else node.keys if isinstance(node, ast.Dict) else []
            for key in keys:
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.end_lineno in comments:
                    columns.setdefault(key.value, comments[key.end_lineno])
    return found


def _field_comment(field: pa.Field, own: dict[str, str], shared: dict[str, str]) -> str:
    """A column's documentation: its field metadata, else its comment in the table, else a shared one."""
    metadata = {key.decode(): value.decode() for key, value in (field.metadata or {}).items()}
    return metadata.get("comment") or metadata.get("description") or own.get(field.name) or shared.get(field.name, "")


def schemas_page(module: ModuleType = schemas) -> str:
    """The Markdown of the warehouse schema reference."""
    comments = _column_comments(module)
    variable_of = {id(value): name for name, value in vars(module).items() if isinstance(value, pa.Schema)}
    shared = {
        column: text
        for name, columns in comments.items()
        if not isinstance(getattr(module, name, None), pa.Schema)
        for column, text in columns.items()
    }
    partitions = ", ".join(f"`{column}`" for column in module.PARTITION_COLUMNS)
    lines = [
        "# Warehouse schemas",
        "",
        "Generated from `editcollapse/warehouse/schemas.py` when the site is built.",
        "",
        inspect.cleandoc(module.__doc__ or ""),
        "",
        f"Every table is partitioned by {partitions} (strings, from the path "
        "`<table>/model=<m>/method=<x>/run=<id>/part-<shard>.parquet`); DuckDB views and polars scans add "
        "them to the columns below.",
        "",
        "| table | columns |",
        "|---|---|",
        *(
            f"| [`{table}`](#{table}) | {len(schema)} + {len(module.PARTITION_COLUMNS)} partition |"
            for table, schema in module.SCHEMAS.items()
        ),
    ]
    for table, schema in module.SCHEMAS.items():
        own = comments.get(variable_of.get(id(schema), ""), {})
        lines += [
            "",
            f"## {table}",
            "",
            f"Partition columns: {partitions}.",
            "",
            "| column | Arrow type | nullable | comment |",
            "|---|---|---|---|",
        ]
        for field in schema:
            nullable = "yes" if field.nullable else "no"
            comment = _prose(_cell(_field_comment(field, own, shared)))
            lines.append(f"| `{field.name}` | `{_cell(str(field.type))}` | {nullable} | {comment} |")
    return "\n".join(lines) + "\n"


def _commands(command: Any, path: str, parent: Any = None) -> Iterator[tuple[str, Any, Any]]:
    """Every command under ``command``, depth first, as (full name, command, its click context)."""
    context = command.context_class(command, info_name=path.split()[-1], parent=parent)
    yield path, command, context
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, f"{path} {name}", context)


def _type_name(parameter: Any, context: Any) -> str:
    """The parameter's type as ``--help`` shows it (``str``, ``int``, ``table|csv``, ``path``)."""
    if hasattr(parameter, "display_type"):
        return parameter.display_type(context).strip("<>")
    return parameter.type.name


def _default(parameter: Any) -> str:
    """The default as a user would type it; empty when there is none."""
    value = parameter.default
    if value is None or parameter.required:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if getattr(parameter, "is_flag", False) and parameter.secondary_opts:
        return f"`{parameter.opts[0] if value else parameter.secondary_opts[0]}`"
    return f"`{value}`"


def _names(parameter: Any) -> str:
    """An option's flags (``--prefect / --no-prefect``) or an argument's name in capitals."""
    if parameter.param_type_name == "argument":
        return f"`{parameter.name.upper()}` (argument)"
    names = " / ".join(f"`{name}`" for name in [*parameter.opts, *parameter.secondary_opts])
    return names + (" (required)" if parameter.required else "")


def cli_page(typer_app: typer.Typer = app) -> str:
    """The Markdown of the command-line reference."""
    lines = [
        "# Command line",
        "",
        "Generated from the Typer app `editcollapse.cli:app` when the site is built. "
        "`editcollapse <command> --help` prints the same help.",
        "",
    ]
    for path, command, context in _commands(typer.main.get_command(typer_app), "editcollapse"):
        level = "#" * min(max(path.count(" "), 1) + 1, 4)
        lines += ["", f"{level} `{path}`", "", _prose(inspect.cleandoc(command.help or "").replace("\b\n", "")), ""]
        parameters = [parameter for parameter in command.params if not getattr(parameter, "hidden", False)]
        if parameters:
            lines += ["| option | type | default | help |", "|---|---|---|---|"]
            lines += [
                f"| {_names(p)} | {_prose(_cell(_type_name(p, context)))} | {_default(p)} | {_prose(_cell(getattr(p, 'help', '') or ''))} |"
                for p in parameters
            ]
        if getattr(command, "commands", None):
            subcommands = ", ".join(f"`{path} {name}`" for name in sorted(command.commands))
            lines += ["", f"Sub-commands: {subcommands}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write both pages into the site being built."""
    with mkdocs_gen_files.open("reference/schemas.md", "w") as page:
        page.write(schemas_page())
    with mkdocs_gen_files.open("reference/cli.md", "w") as page:
        page.write(cli_page())


main()
