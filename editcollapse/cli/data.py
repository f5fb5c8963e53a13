"""`editcollapse data list | show | validate`: the data sources, their cases, their errors."""

from __future__ import annotations

import json
import time

import typer
from rich.table import Table

from editcollapse.cli import formatting, options

data_app = typer.Typer(help="Edit-case sources and perplexity corpora.", no_args_is_help=True)


@data_app.command("list")
def list_sources() -> None:
    """Every named source and perplexity corpus, and whether it is on disk here (nothing is downloaded).

    Example: editcollapse data list
    """
    from editcollapse.datasets.download import DataUnavailable
    from editcollapse.datasets.loading import GENERATED
    from editcollapse.datasets.ppl import EMBEDDED_SIZES
    from editcollapse.datasets.sources import SOURCES, data_roots, locate

    table = Table(title="data sources")
    for column in ("name", "dataset", "here", "description"):
        table.add_column(column, overflow="fold")
    for name in GENERATED:
        table.add_row(name, name, "generated", "geography facts from packaged GeoNames data (offline)")
    for source in SOURCES.values():
        try:
            here = ", ".join(str(p) for p in locate(source.name, download=False))
        except DataUnavailable:
            downloadable = any(all(f.url for f in layout) for layout in source.layouts)
            here = "missing (downloads on first use)" if downloadable else f"missing ({source.note})"
        table.add_row(source.name, source.dataset, here, source.description)
    for name, size in EMBEDDED_SIZES.items():
        table.add_row(name, "ppl", "packaged", f"{size} English sentences from gensim's packaged text")
    console = formatting.console()
    console.print(table)
    console.print(f"data roots searched: {', '.join(str(r) for r in data_roots())} (add with EDITCOLLAPSE_DATA)")


@data_app.command("show")
def show(
    source: str = typer.Argument(..., help="source name, file or folder; or a perplexity corpus"),
    limit: int = typer.Option(3, min=1, help="how many cases / sentences to print (at least 1)"),
    case_id: str | None = typer.Option(None, "--case-id", help="print only this case"),
    seed: int = options.seed(help="seed of generated sources"),
) -> None:
    """Print cases of a source as JSON (or sentences and source mix of a perplexity corpus).

    Example: editcollapse data show counterfact --limit 2
    """
    from editcollapse.datasets.loading import load_cases
    from editcollapse.datasets.ppl import EMBEDDED_SIZES, RELEASED, load_ppl_corpus

    if source in RELEASED or source in EMBEDDED_SIZES:
        corpus = load_ppl_corpus(source)
        typer.echo(f"{corpus.name}: {len(corpus.texts)} sentences; mix {json.dumps(corpus.mix())}")
        for record in corpus.to_records()[:limit]:
            typer.echo(json.dumps(record, ensure_ascii=False))
        return
    load = load_cases(source, seed=seed, limit=None if case_id else limit)
    cases = [c for c in load.cases if c.case_id == case_id] if case_id else load.cases
    if case_id and not cases:
        raise typer.BadParameter(f"no case {case_id} in {source}")
    for case in cases:
        typer.echo(json.dumps(case.to_dict(), ensure_ascii=False, indent=2))


@data_app.command("validate")
def validate(
    source: str = typer.Argument(..., help="source name, file or folder"),
    show_errors: int = typer.Option(20, "--show-errors", help="how many error rows to print"),
    errors_out: str | None = typer.Option(None, "--errors-out", help="write every error row as JSON Lines"),
    seed: int = options.seed(help="seed of generated sources"),
) -> None:
    """Load and validate every record; exit 1 when some are invalid.

    Example: editcollapse data validate my_cases.jsonl --errors-out errors.jsonl
    """
    from editcollapse.datasets.loading import load_cases

    start = time.perf_counter()
    load = load_cases(source, seed=seed)
    seconds = time.perf_counter() - start
    by_field: dict[str, int] = {}
    for error in load.errors:
        by_field[error.field] = by_field.get(error.field, 0) + 1
    typer.echo(
        f"{source}: {len(load.cases)} valid cases, {len(load.errors)} error rows "
        f"from {len(load.files)} file(s) in {seconds:.2f} s"
    )
    if by_field:
        typer.echo("errors by field: " + json.dumps(dict(sorted(by_field.items(), key=lambda kv: -kv[1]))))
    for error in load.errors[:show_errors]:
        typer.echo(f"  {error}")
    if errors_out:
        with open(errors_out, "w", encoding="utf-8") as handle:
            for error in load.errors:
                handle.write(json.dumps(error.__dict__, ensure_ascii=False) + "\n")
    if load.errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``editcollapse data …`` to the main app."""
    app.add_typer(data_app, name="data")
