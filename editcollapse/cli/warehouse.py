"""`editcollapse sql` (read-only SQL over the warehouse's DuckDB views; print a table or export) and
`editcollapse warehouse check` (verify every part; `--repair` quarantines the bad ones)."""

from __future__ import annotations

import sys
import tempfile
from enum import Enum
from pathlib import Path

import typer

from editcollapse.cli import formatting, options
from editcollapse.cli.formatting import cell

warehouse_app = typer.Typer(
    name="warehouse", help="Look after the warehouse: verify its parts, quarantine bad ones.", no_args_is_help=True
)


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def existing_warehouse(root: str | None):
    """The warehouse at ``root``, or exit 2 with one line when it is not one (a read never makes one)."""
    from editcollapse.warehouse.store import Warehouse

    try:
        return Warehouse(root).require_existing()
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def error_line(error: Exception, store) -> str:
    """DuckDB's error in one line; one about a Parquet file also says how to find and quarantine bad parts."""
    from editcollapse.warehouse.catalog import REPAIR_HINT

    message = str(error).splitlines()[0]
    if ".parquet" in str(error) and REPAIR_HINT not in message:
        message += f"; {REPAIR_HINT} -w {store.location}"
    return message


def sql(
    query: str = typer.Argument(
        ...,
        help="one query (SELECT, FROM, WITH, DESCRIBE, SHOW, SUMMARIZE) over the views runs, cases, edits, "
        "edit_metrics, ppl, hardcf, sequential, hardedit_candidates, hardedit, downstream; anything that "
        "would write (COPY, CREATE, DROP, ATTACH, INSTALL, SET …) is refused",
    ),
    warehouse: str = options.warehouse(),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table,
        "--format",
        "-f",
        help="table (print), csv, json (one object a line; NaN/inf as the strings nan/inf/-inf) or parquet",
    ),
    output: Path = typer.Option(None, "--output", "-o", help="file to write (csv/json default to stdout)"),
    max_rows: int = typer.Option(100, help="rows to print in table format"),
) -> None:
    """Run a read-only DuckDB query over the warehouse tables.

    Example: editcollapse sql "SELECT method, count(*) FROM edits GROUP BY method" -w warehouse
    """
    import duckdb

    from editcollapse.cli.export import write_result
    from editcollapse.warehouse.catalog import check_query, connect

    store = existing_warehouse(warehouse)
    try:
        query = check_query(query)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if output_format is OutputFormat.parquet and output is None:
        typer.echo("error: --format parquet needs a file — add --output FILE", err=True)
        raise typer.Exit(2)
    target = output if output is not None else Path(tempfile.mkdtemp()) / "result"
    try:
        session = connect(store)
        if output_format is OutputFormat.table:
            _print_table(session.execute(query), max_rows)
            return
        write_result(session.sql(query).to_arrow_reader(), output_format.value, target)
    except duckdb.Error as error:
        typer.echo(f"error: query failed: {error_line(error, store)}", err=True)
        raise typer.Exit(2) from None
    if output is None:
        sys.stdout.write(target.read_text())
        target.unlink()
    else:
        typer.echo(f"wrote {output}", err=True)


def _print_table(cursor, max_rows: int) -> None:
    from rich.table import Table

    table = Table(show_lines=False)
    for column in cursor.description:
        table.add_column(column[0], overflow="fold", max_width=60)
    rows = cursor.fetchmany(max_rows + 1)
    for row in rows[:max_rows]:
        table.add_row(*(cell(value, null="NULL", digits=6) for value in row))
    out = formatting.console()
    out.print(table)
    if len(rows) > max_rows:
        out.print(f"(first {max_rows} rows shown; --max-rows N for more, or --format csv)")


@warehouse_app.command("check")
def check(
    warehouse: str = options.warehouse(),
    table: list[str] = typer.Option(None, "--table", "-t", help="check only this table (repeatable)"),
    repair: bool = typer.Option(
        False, "--repair", help="move bad parts to <warehouse>/_quarantine/ (their stage recomputes them)"
    ),
) -> None:
    """Verify every part: where it lies, its Parquet footer, its columns against the table's schema,
    and (sweep tables) its shard's completion mark. Exit 1 when bad parts remain.

    Example: editcollapse warehouse check -w warehouse --repair
    """
    from editcollapse.warehouse.schemas import SCHEMAS

    unknown = sorted(set(table or []) - set(SCHEMAS))
    if unknown:
        typer.echo(f"error: unknown table(s) {unknown} — use one of {', '.join(SCHEMAS)}", err=True)
        raise typer.Exit(2)
    store = existing_warehouse(warehouse)
    reports = store.check(table or None)
    for report in reports:
        typer.echo(
            f"{report.table:20} {report.n_parts:6} part(s)  {len(report.bad)} bad  {len(report.incomplete)} unfinished"
        )
        for problem in report.bad:
            typer.echo(f"  bad         {store.backend.url(problem.key)}: {problem.reason}")
        for problem in report.incomplete:
            typer.echo(f"  unfinished  {store.backend.url(problem.key)}: {problem.reason}")
    n_bad = sum(len(report.bad) for report in reports)
    if not n_bad:
        typer.echo("no bad parts")
        return
    if not repair:
        typer.echo(f"{n_bad} bad part(s): run again with --repair to move them to the quarantine folder")
        raise typer.Exit(1)
    moved = store.quarantine(reports)
    folder = store.backend.url("/".join(moved[0].split("/")[:2]))  # _quarantine/<stamp>
    typer.echo(
        f"moved {len(moved)} bad part(s) to {folder}; the stage that wrote each recomputes it on its next run "
        "(a sweep: run the same sweep again)"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("sql")(sql)
    app.add_typer(warehouse_app)
