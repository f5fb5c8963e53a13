"""Writing the analysis outputs: one CSV per table that has rows, ``report.md`` and ``report.html``.

Both reports show the same :class:`Section` list in the same order; a section with no rows says
so and gets no CSV (an empty or header-only file would look like data).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
NO_DATA = "No data: the warehouse has no rows for this section yet, so no CSV was written."


@dataclass(frozen=True)
class Section:
    """One section of the report: its table, its CSV (None when it has no rows) and its figures."""

    name: str
    rows: list[dict[str, Any]]
    csv: Path | None
    figures: list[Path]

    @property
    def title(self) -> str:
        return TITLES[self.name]

    @property
    def runs(self) -> list[str]:
        """The runs this section's rows come from, sorted."""
        return sorted({str(row["run"]) for row in self.rows if row.get("run") is not None})


@dataclass(frozen=True)
class Report:
    """Everything both reports show: what was analysed, when, and the sections in order."""

    warehouse: str
    threshold: float
    sections: list[Section]
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """``rows`` (at least one) as CSV with a header from the first row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_tables(tables: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, str]:
    """Each section's table with rows as ``<out>/<CSV_NAMES[section]>.csv``; section → path. An empty
    section writes nothing and removes the CSV an earlier analysis left there."""
    files = {}
    for name, rows in tables.items():
        path = out / f"{CSV_NAMES[name]}.csv"
        if rows:
            files[name] = str(write_csv(rows, path))
        else:
            path.unlink(missing_ok=True)
    return files


def cell(value: Any) -> str:
    """A table cell as text: floats to 4 significant digits, None empty."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table (floats to 4 significant digits), or the note that there is no data."""
    if not rows:
        return f"_{NO_DATA}_\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_markdown(report: Report, out: Path) -> Path:
    """``<out>/report.md``: every table as markdown, each followed by its figures (linked relative to ``out``)."""
    lines = [
        f"# Study analysis\n\nwarehouse `{report.warehouse}`, collapse threshold {report.threshold:g}, "
        f"written {report.created:%Y-%m-%d %H:%M} UTC\n"
    ]
    for section in report.sections:
        lines.append(f"## {section.title}\n\n{markdown_table(section.rows)}")
        lines += [f"![{f.stem}]({f.relative_to(out)})\n" for f in section.figures]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
