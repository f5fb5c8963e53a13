"""HardEdit flows (paper §7, Appendix A.6): generate candidates with an LLM, filter them with ROME.

Thin Prefect wrappers around :mod:`editcollapse.stages.hardedit.runs`: each flow's parameter is
the stage's config; it holds a slot of the ``gpu`` limit around its GPU work, logs to the run
logger, shows a progress bar and a progress artifact (over the calls; over the edited (candidate,
model) pairs) and publishes its result as a markdown artifact. ``.fn`` calls the plain function
(no Prefect server).
"""

from __future__ import annotations

from prefect import flow

from editcollapse.orchestration.artifacts import publish_summary
from editcollapse.orchestration.ops.concurrency import gpu_slot
from editcollapse.orchestration.progress import ProgressBar, progress_artifact
from editcollapse.orchestration.run_context import run_logger
from editcollapse.stages.hardedit.config import FilterConfig, GenerationConfig
from editcollapse.stages.hardedit.runs import FilterResult, GenerationResult, run_filter, run_generation
from editcollapse.warehouse.store import Warehouse


@flow(name="hardedit-generate")
def generate_hardedit_candidates(
    config: GenerationConfig = GenerationConfig(), warehouse: str | None = None
) -> GenerationResult:
    """Generate HardEdit candidates; return the run's counts (calls, parsed, valid, unique, rejections)."""
    config.preflight()  # a mistake fails here, with the command line's message, before any runs row
    with ProgressBar("HardEdit generation", artifact=progress_artifact(None, "HardEdit generation: calls done")) as bar:
        result = run_generation(
            config, Warehouse(warehouse), gpu=gpu_slot, log=run_logger(__name__), on_progress=bar.update
        )
    publish_summary("hardedit-generation", result.to_dict())
    return result


@flow(name="hardedit-filter")
def filter_hardedit(config: FilterConfig = FilterConfig(), warehouse: str | None = None) -> FilterResult:
    """Single-edit sweep of the valid candidates on each reference model; keep ppl > threshold.

    Writes ``hardedit`` rows (every candidate, kept or not, per model) and the kept candidates in
    the paper's JSON form to ``config.export`` (default ``<warehouse>/exports/<run id>.json``).
    """
    config.preflight()  # a mistake fails here, with the command line's message, before any runs row
    artifact = progress_artifact(None, "HardEdit filter: (candidate, reference model) edits done")
    with ProgressBar("HardEdit filter", artifact=artifact) as bar:
        result = run_filter(
            config, Warehouse(warehouse), gpu=gpu_slot, log=run_logger(__name__), on_progress=bar.update
        )
    publish_summary("hardedit-filter", result.to_dict())
    return result
