"""The screen as a Prefect flow: every case's ROME risk bound from forward passes, before any sweep.

A progress bar and a progress artifact follow the cases; at the end a table artifact lists the
riskiest cases. The run id defaults to a digest of the parameters, so the same run resumes and
computes only the shards missing from the ``screen`` table.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from editcollapse.orchestration.flows.sweep import artifact_key
from editcollapse.orchestration.progress import ProgressBar, progress_artifact
from editcollapse.orchestration.run_context import run_logger
from editcollapse.orchestration.tasks.screen import screen_task
from editcollapse.stages.screen.config import ScreenConfig
from editcollapse.stages.screen.run import ScreenResult
from editcollapse.warehouse.store import Warehouse


@flow(name="screen", flow_run_name="screen {config.model} · {config.method} · {config.dataset}")
def screen_cases_flow(
    config: ScreenConfig = ScreenConfig(), warehouse: str | None = None, progress_bar: bool = True
) -> ScreenResult:
    """Screen ``config.dataset`` on ``config.model`` for ``config.method`` into the ``screen`` table;
    ``progress_bar=False`` hides the terminal bar (the progress artifact stays)."""
    config.preflight()  # a mistake fails here, with the command line's message, before any runs row
    root = Warehouse(warehouse).location
    bar = ProgressBar(
        f"screen {config.run_id}",
        enabled=progress_bar,
        artifact=progress_artifact(
            artifact_key("screen-progress", config.run_id), f"cases of {config.run_id} screened"
        ),
    )
    with bar:
        result = screen_task(config, root, on_progress=bar.update)
    create_table_artifact(
        [{"rank": rank + 1, **row} for rank, row in enumerate(result.riskiest)],
        key=artifact_key("screen-riskiest", config.run_id),
        description=f"riskiest cases of screen {config.run_id} (risk: the bound on ‖ΔW‖_F)",
    )
    run_logger(__name__).info(f"screen {config.run_id}: {result.headline()}")
    return result
