"""What flows put into Prefect artifacts: JSON-safe table rows and PNG figures inlined in markdown
(an artifact is shown by the UI, which cannot read the run's files)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def table_rows(rows: Iterable[Mapping[str, Any]], drop: Iterable[str] = ()) -> list[dict[str, Any]]:
    """``rows`` for a table artifact: non-finite floats (not JSON) become None; ``drop`` columns left out."""
    skipped = set(drop)
    return [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items() if k not in skipped}
        for row in rows
    ]


def png_data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:`` URI, for a markdown image inside an artifact."""
    return f"data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}"


def figures_markdown(paths: Iterable[str | Path]) -> str:
    """One section per figure: its name as a heading, the image inlined, its file path."""
    return "\n".join(
        f"### {Path(path).stem}\n\n![{Path(path).stem}]({png_data_uri(path)})\n\n`{path}`\n" for path in paths
    )


def publish_summary(key: str, summary: Mapping[str, Any]) -> None:
    """``summary`` as a ``| field | value |`` markdown artifact; skipped outside a flow or task run
    (``.fn`` calls: creating one there would start a temporary Prefect server)."""
    from prefect.artifacts import create_markdown_artifact

    from editcollapse.orchestration.run_context import in_prefect_run

    if not in_prefect_run():
        return
    lines = ["| field | value |", "|---|---|"] + [f"| {k} | {json.dumps(v, default=str)} |" for k, v in summary.items()]
    create_markdown_artifact(markdown="\n".join(lines), key=key)
