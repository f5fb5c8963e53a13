"""`editcollapse sql`: run SQL over the warehouse's DuckDB views; print a table or export."""

from __future__ import annotations

import sys
import tempfile
from enum import Enum
from pathlib import Path

import typer

from editcollapse.cli import formatting
from editcollapse.cli.formatting import cell

WAREHOUSE_HELP = "warehouse root: a directory or an fsspec URL such as s3://bucket/wh (default: $EDITCOLLAPSE_WAREHOUSE or ./warehouse)"


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


_COPY_OPTIONS = {
    OutputFormat.csv: "FORMAT csv, HEADER true",
    OutputFormat.json: "FORMAT json",
    OutputFormat.parquet: "FORMAT parquet",
}


def sql(
    query: str = typer.Argument(
        ...,
        help="SQL over the views runs, cases, edits, edit_metrics, ppl, "
        "hardcf, sequential, hardedit_candidates, hardedit, downstream",
    ),
    warehouse: str = typer.Option(None, "--warehouse", "-w", help=WAREHOUSE_HELP),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", "-f", help="table (print), csv, json (one object a line) or parquet"
    ),
    output: Path = typer.Option(None, "--output", "-o", help="file to write (csv/json default to stdout)"),
    max_rows: int = typer.Option(100, help="rows to print in table format"),
) -> None:
    """Run a DuckDB query over the warehouse tables."""
    import duckdb

    from editcollapse.warehouse.catalog import connect

    query = query.strip().rstrip(";")
    connection = connect(warehouse)
    try:
        cursor = connection.execute(query)
    except duckdb.Error as error:
        typer.echo(f"query failed: {error}", err=True)
        raise typer.Exit(2) from error
    if output_format is OutputFormat.table:
        _print_table(cursor, max_rows)
        return
    if output_format is OutputFormat.parquet and output is None:
        typer.echo("--format parquet needs --output FILE", err=True)
        raise typer.Exit(2)
    target = output if output is not None else Path(tempfile.mkdtemp()) / "result"
    escaped = str(target).replace("'", "''")
    connection.execute(f"COPY ({query}) TO '{escaped}' ({_COPY_OPTIONS[output_format]})")
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("sql")(sql)
