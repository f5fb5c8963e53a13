"""Run lm-eval tasks on a model object already in memory (edited or not) and flatten the scores.

The model is wrapped in lm-eval's ``HFLM`` as an object, so an edit applied in place (a
``Delta.applied`` context) is what gets evaluated, with no copy saved to disk. Tasks are loaded
once (:func:`load_tasks`) and reused for every model of a comparison.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# lm-eval's own default (its command line does not expose it), so our stderrs equal its stderrs.
DEFAULT_BOOTSTRAP_ITERS = 100_000

# What lm-eval's HFLM warns on every call when handed a model object: exactly what we do, on purpose.
MODEL_OBJECT_NOTES = ("`pretrained` model kwarg is not of type `str`", "Passed an already-initialized model")


class _DropModelObjectNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(MODEL_OBJECT_NOTES)


@contextlib.contextmanager
def lm_eval_quiet() -> Iterator[None]:
    """Keep lm-eval's and datasets' own output (their bars, "bootstrapping for stddev" printed on
    stdout, where a command's JSON result goes) out of the terminal: it goes to this module's debug
    log instead, and the stage's progress bar stays the one to watch."""
    huggingface_log = logging.getLogger("lm_eval.models.huggingface")
    if not any(isinstance(f, _DropModelObjectNotes) for f in huggingface_log.filters):
        huggingface_log.addFilter(_DropModelObjectNotes())
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            yield
    finally:
        if said.getvalue().strip():
            log.debug("lm-eval's own output:\n%s", said.getvalue()[-4000:])


@dataclass(frozen=True)
class TaskScore:
    """One metric of one task: its value, standard error (nan when lm-eval gives none) and item count."""

    task: str
    metric: str
    value: float
    stderr: float
    n: int
    filter: str = "none"


@dataclass
class LoadedTasks:
    """Tasks ready to evaluate, the requested ones whose data could not be reached (with why), and
    the manager that loaded them (handed to ``simple_evaluate``, which would otherwise index all of
    lm-eval's tasks again on every call)."""

    tasks: dict[str, Any]
    unreachable: dict[str, str]
    manager: Any


def task_manager_for(names: Sequence[str], include_paths: Sequence[str | Path] = ()) -> Any:
    """An lm-eval ``TaskManager`` that knows ``names``: the folders in ``include_paths`` alone when
    they define every name, else those plus lm-eval's own tasks (indexing those costs ≈ 5 s)."""
    from lm_eval.tasks import TaskManager

    paths = [str(Path(path).resolve()) for path in include_paths]
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if all(name in local.all_tasks for name in names):
            return local
    return TaskManager(include_path=paths or None, include_defaults=True)


def load_tasks(names: Sequence[str], manager: Any) -> LoadedTasks:
    """Load each task (its data included) through ``manager``; a task that fails is reported, not fatal.

    Offline, lm-eval's own tasks load only when their data is already in the HuggingFace cache.
    """
    tasks: dict[str, Any] = {}
    unreachable: dict[str, str] = {}
    for name in names:
        try:
            with lm_eval_quiet():
                loaded = manager.load([name])["tasks"]
        except Exception as error:  # lm-eval and datasets raise many types for missing data
            unreachable[name] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            log.warning("task %s is not available here: %s", name, unreachable[name])
            continue
        tasks.update(loaded)
    return LoadedTasks(tasks, unreachable, manager)


def evaluate_model(
    model: Any,
    tokenizer: Any,
    tasks: LoadedTasks,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
) -> list[TaskScore]:
    """Evaluate ``model`` as it is now on every loaded task with ``simple_evaluate``; flat scores.

    ``limit`` takes the first ``limit`` items of each task (our local suites are shuffled at build
    time, so that is a random sample).
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    # lm-eval bootstraps stderr in a fork()ed multiprocessing pool unless DISABLE_MULTIPROC is set.
    # Inside a Prefect run the forked workers inherit Prefect's SIGTERM handler: a worker that gets
    # the pool's terminate() while still in its at-fork hooks swallows it and the pool's join()
    # waits forever (seen in the study flow on SmolLM2). The single-process path draws the same
    # replicates (random.Random(i) per chunk) and forks no copy of a process holding the model.
    os.environ.setdefault("DISABLE_MULTIPROC", "1")
    if not tasks.tasks:
        raise ValueError(f"no task to evaluate (unreachable: {tasks.unreachable or 'none requested'})")
    with lm_eval_quiet():
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
        results = simple_evaluate(
            lm,
            tasks=list(tasks.tasks.values()),
            limit=limit,
            log_samples=False,
            bootstrap_iters=bootstrap_iters,
            task_manager=tasks.manager,
        )
    return scores_from_results(results)


def scores_from_results(results: dict[str, Any]) -> list[TaskScore]:
    """Flatten lm-eval's ``results`` dict (``"acc,none"``/``"acc_stderr,none"`` keys) into scores."""
    scores = []
    for task, metrics in results["results"].items():
        n = int(results.get("n-samples", {}).get(task, {}).get("effective", metrics.get("sample_len", 0)))
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filter_name = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filter_name}")
            scores.append(
                TaskScore(
                    task=task, metric=metric, value=_number(value), stderr=_number(stderr), n=n, filter=filter_name
                )
            )
    return scores


def _number(value: Any) -> float:
    """lm-eval writes ``"N/A"`` for a missing stderr; that and None become nan."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
