"""Writing the analysis outputs: one CSV per table and ``report.md`` with every table and figure."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

CSV_NAMES = {
    "single_edit": "single-edit-ppl",
    "hard_cases": "hard-cases",
    "sequential": "sequential",
    "downstream": "downstream-correlation",
}
TITLES = {
    "single_edit": "Single-edit perplexity (ME-PPL) per model, method and sweep",
    "hard_cases": "Hard cases: HardCF selections and HardEdit filter",
    "sequential": "Sequential editing: hard vs normal",
    "downstream": "Perplexity vs downstream performance",
}


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """``rows`` as CSV with a header from the first row (an empty file when there are none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def write_tables(tables: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, str]:
    """Each section's table as ``<out>/<CSV_NAMES[section]>.csv``; section → path."""
    return {name: str(write_csv(rows, out / f"{CSV_NAMES[name]}.csv")) for name, rows in tables.items()}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table (floats to 4 significant digits), or a note that there are no rows yet."""
    if not rows:
        return "_no rows yet_\n"
    columns = list(rows[0])

    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(show(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(
    tables: dict[str, list[dict[str, Any]]], figures: dict[str, list[str]], out: Path, warehouse: str
) -> Path:
    """``<out>/report.md``: every table as markdown, each followed by its figures (linked relative to ``out``)."""
    lines = [f"# Study analysis\n\nwarehouse `{warehouse}`\n"]
    for name, rows in tables.items():
        lines.append(f"## {TITLES[name]}\n\n{markdown_table(rows)}")
        lines += [f"![{Path(f).stem}]({Path(f).relative_to(out)})\n" for f in figures.get(name, [])]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
