"""Which downstream tasks exist: the paper's (lm-eval's own definitions) and the offline suites.

The paper's tasks run through lm-eval's task YAMLs and need their HuggingFace datasets (online, or
already cached). The offline suites are built here from data that ships with the installed
packages (and, for MMLU, a local file), written to a folder, and loaded with ``--include_path``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from editcollapse.stages.downstream.suites import (
    PAPER_MMLU_SUBJECTS,
    LocalTask,
    geofacts_mc_task,
    lastword_task,
    mmlu_task,
    read_mmlu,
    write_suite,
)

# The paper's downstream tasks, as lm-eval names them.
PAPER_TASKS = (
    "piqa",
    "hellaswag",
    *(f"mmlu_{subject}" for subject in PAPER_MMLU_SUBJECTS),
    "lambada_openai",
    "nq_open",
    "squadv2",
)
LASTWORD = "ec_lastword_embedded"
GEOFACTS_MC = "ec_geofacts_mc"
MMLU_SUB = "ec_mmlu_sub"
OFFLINE_TASKS = (LASTWORD, GEOFACTS_MC, MMLU_SUB)
MMLU_ENV = "EDITCOLLAPSE_MMLU"


def is_local(task: str) -> bool:
    """Whether ``task`` is one of our offline suites (else it is an lm-eval task name)."""
    return task in OFFLINE_TASKS


def mmlu_path(explicit: str | Path | None = None) -> Path | None:
    """The MMLU JSON file to build ``ec_mmlu_sub`` from: ``explicit``, else ``$EDITCOLLAPSE_MMLU``,
    else ``mmlu/mmlu.json`` under a data root (``$EDITCOLLAPSE_DATA``, the download cache)."""
    chosen = explicit or os.environ.get(MMLU_ENV)
    if chosen:
        return Path(chosen).expanduser()
    from editcollapse.datasets.sources import data_roots

    return next((root / "mmlu" / "mmlu.json" for root in data_roots() if (root / "mmlu" / "mmlu.json").is_file()), None)


def build_local_tasks(
    names: Sequence[str], *, mmlu_file: str | Path | None = None, items: int = 500, seed: int = 0
) -> list[LocalTask]:
    """Build the offline suites in ``names`` from their sources (at most ``items`` items each).

    ``ec_lastword_embedded`` uses the embedded English corpus, ``ec_geofacts_mc`` the embedded
    geofacts cases, ``ec_mmlu_sub`` the paper's four MMLU subjects from ``mmlu_file``.
    """
    unknown = [name for name in names if not is_local(name)]
    if unknown:
        raise ValueError(f"not an offline suite: {unknown}; offline suites are {', '.join(OFFLINE_TASKS)}")
    tasks = []
    if LASTWORD in names:
        from editcollapse.datasets import english_texts

        tasks.append(
            lastword_task(
                english_texts("embedded"),
                name=LASTWORD,
                n=items,
                seed=seed,
                source='editcollapse.datasets.english_texts("embedded")',
            )
        )
    if GEOFACTS_MC in names:
        from editcollapse.datasets import load_cases

        cases = load_cases("geofacts", seed=seed).cases
        tasks.append(
            geofacts_mc_task(
                cases, name=GEOFACTS_MC, n=items, seed=seed, source='editcollapse.datasets.load_cases("geofacts")'
            )
        )
    if MMLU_SUB in names:
        path = mmlu_path(mmlu_file)
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"{MMLU_SUB} needs an MMLU JSON file (rows: question, subject, choices, answer): "
                f"pass its path, set ${MMLU_ENV}, or put it at mmlu/mmlu.json under $EDITCOLLAPSE_DATA"
                + (f"; {path} does not exist" if path else "")
            )
        tasks.append(mmlu_task(read_mmlu(path), name=MMLU_SUB, source=str(path)))
    return tasks


def prepare_suite(
    names: Sequence[str], directory: str | Path, *, mmlu_file: str | Path | None = None, items: int = 500, seed: int = 0
) -> Path | None:
    """Write the offline suites among ``names`` into ``directory``; None when none is asked for."""
    local = [name for name in names if is_local(name)]
    if not local:
        return None
    return write_suite(build_local_tasks(local, mmlu_file=mmlu_file, items=items, seed=seed), directory)
