"""``report.html``: the analysis as one self-contained page.

Figures are embedded as base64 data URIs, the style and the few lines of table sorting are
inline, and a Content-Security-Policy forbids anything else, so the page opens offline and can be
mailed or archived on its own. Jinja2 renders it with autoescaping on: run ids, model names and
paths never become markup.
"""

from __future__ import annotations

import base64
import math
import mimetypes
from importlib import resources
from pathlib import Path
from typing import Any

from editcollapse import __version__
from editcollapse.stages.analysis.report import NO_DATA, Report, Section, cell

TEMPLATE = "report.html.jinja"


def data_uri(path: Path) -> str:
    """The file at ``path`` as a ``data:`` URI (PNG, SVG …, by its suffix)."""
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def sort_key(value: Any) -> str | None:
    """A number's sort key for the page's table sorting (``data-v``), None for text; an empty
    cell sorts as NaN (last)."""
    if value is None:
        return "NaN"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")


def _section(section: Section) -> dict[str, Any]:
    columns = list(section.rows[0]) if section.rows else []
    return {
        "id": section.name.replace("_", "-"),
        "title": section.title,
        "runs": section.runs,
        "columns": columns,
        "rows": [[_cell(row[c]) for c in columns] for row in section.rows],
        "csv": None if section.csv is None else section.csv.name,  # written beside the page
        "figures": [{"name": f.name, "src": data_uri(f)} for f in section.figures],
    }


def _cell(value: Any) -> dict[str, Any]:
    key = sort_key(value)
    return {"text": cell(value), "key": key, "number": key not in (None, "NaN")}


def render_html(report: Report) -> str:
    """The page's HTML (see the module doc); each CSV is linked by its name, as it lies beside the page."""
    import jinja2

    template = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    ).from_string(resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8"))
    return template.render(
        warehouse=report.warehouse,
        threshold=f"{report.threshold:g}",
        created=f"{report.created:%Y-%m-%d %H:%M} UTC",
        version=__version__,
        no_data=NO_DATA,
        sections=[_section(section) for section in report.sections],
    )


def write_html(report: Report, out: Path) -> Path:
    """``<out>/report.html`` (see the module doc)."""
    path = out / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path
