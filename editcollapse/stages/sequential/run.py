"""A sequential run: its parameters and id, its trajectories, where it keeps them, its figures.

Pure (no Prefect): ``editcollapse.orchestration.flows.sequential`` wraps these in tasks. A run's folder is its
partition folder of the ``sequential`` table (``<warehouse>/sequential/model=…/method=…/run=…``):
the finished trajectories' Parquet parts sit there beside ``deltas/<group>-trial<k>/`` (the
per-step Deltas and rows that make a run resumable) and the PNG figures. Readers glob
``*.parquet`` only, so the other files never show up in a query.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from editcollapse.editors.hparams import Hparams
from editcollapse.models.loading import LoadedModel
from editcollapse.stages.progress import OnProgress, ignore_progress
from editcollapse.stages.result import StageResult
from editcollapse.stages.sequential.config import SequentialConfig
from editcollapse.stages.sequential.groups import Member, trial_order
from editcollapse.stages.sequential.plots import plot_norms, plot_perplexity
from editcollapse.stages.sequential.rows import table_rows
from editcollapse.stages.sequential.sources import Groups
from editcollapse.stages.sequential.store import StepStore
from editcollapse.stages.sequential.trajectory import EditFn, Evaluator, TrajectorySettings, run_trajectory
from editcollapse.warehouse import Warehouse

TABLE = "sequential"


@dataclass(frozen=True)
class Trajectory:
    """One (group, trial): the members it edits, in order."""

    group: str
    trial: int
    members: list[Member]

    @property
    def shard(self) -> str:
        return f"{self.group}-trial{self.trial:03d}"


def plan_trajectories(groups: Groups, config: SequentialConfig) -> list[Trajectory]:
    """hard trial 0, normal trial 0, hard trial 1, … (interleaved, so a partial run compares both)."""
    return [
        Trajectory(name, trial, trial_order(members, config.n_edits, config.seed, trial))
        for trial in range(config.trials)
        for name, members in (("hard", groups.hard), ("normal", groups.normal))
    ]


def run_folder(warehouse: Warehouse, config: SequentialConfig, run_id: str) -> Path:
    return warehouse.partition_dir(TABLE, config.model, config.method, run_id)


def make_edit(method: str, hparams: Hparams) -> EditFn:
    """The editor of ``method`` as ``(loaded model, case, earlier) -> Delta`` (always on the model as it
    is now, which carries ``earlier``: the trajectory's Deltas so far, summed)."""
    from editcollapse.editors.api import edit_after, get_editor

    editor = get_editor(method)

    def edit(loaded: LoadedModel, case, earlier) -> Any:
        return edit_after(method, editor, loaded.model, loaded.tokenizer, loaded.arch, [case], hparams, earlier)

    return edit


def run_one(
    loaded: LoadedModel,
    edit: EditFn,
    evaluate: Evaluator,
    warehouse: Warehouse,
    config: SequentialConfig,
    run_id: str,
    trajectory: Trajectory,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    extra: Evaluator | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume, or just read back) one trajectory and write its part of the table.

    ``extra``: the evaluator of ``config.extra_corpus`` (None when the run has no second corpus)."""
    folder = run_folder(warehouse, config, run_id)
    store = StepStore(folder / "deltas" / trajectory.shard)
    labels = {
        "run_id": run_id,
        "group": trajectory.group,
        "trial": trajectory.trial,
        "corpus": config.ppl_corpus,
        "extra_corpus": config.extra_corpus,
    }
    if warehouse.has_part(TABLE, config.model, config.method, run_id, trajectory.shard):
        return store.stored_rows()  # finished earlier: its stored steps are its rows
    rows = run_trajectory(
        loaded,
        edit,
        trajectory.members,
        evaluate,
        store,
        TrajectorySettings(threshold=config.threshold, ppl_every=config.ppl_every, extra_every=config.extra_every),
        labels,
        on_step=on_step,
        extra=extra,
    )
    warehouse.write_part(
        TABLE, table_rows(rows), model=config.model, method=config.method, run_id=run_id, shard=trajectory.shard
    )
    return rows


def write_plots(rows: list[dict[str, Any]], folder: Path, config: SequentialConfig, run_id: str) -> list[Path]:
    """The run's two figures (perplexity and cumulative weight-change norm vs edits) as PNG."""
    title = f"{config.method} on {config.model}: hard vs normal ({config.ppl_corpus}, every {config.ppl_every})"
    paths = [
        plot_perplexity(rows, folder / f"{run_id}-perplexity.png", threshold=config.threshold, title=title),
        plot_norms(
            rows,
            folder / f"{run_id}-weight-change.png",
            title=f"{config.method} on {config.model}: cumulative weight change",
        ),
    ]
    if config.extra_corpus is not None:
        title = (
            f"{config.method} on {config.model}: hard vs normal ({config.extra_corpus}, every "
            f"{config.extra_every} and at the end)"
        )
        paths.append(
            plot_perplexity(
                rows,
                folder / f"{run_id}-perplexity-extra.png",
                threshold=config.threshold,
                title=title,
                value="extra_ppl_mean",
            )
        )
    return paths


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per trajectory: edits made, final perplexity, where it collapsed, final norms."""
    lines: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["group"], row["trial"])
        line = lines.setdefault(
            key,
            {
                "group": row["group"],
                "trial": row["trial"],
                "edits": 0,
                "baseline_ppl": None,
                "final_ppl": None,
                "collapsed_at": None,
                "final_all_success": None,
                "cumulative_fro": None,
                "cumulative_spectral": None,
                "errors": 0,
                "baseline_extra_ppl": None,
                "final_extra_ppl": None,
            },
        )
        if row["step"] == 0:
            line["baseline_ppl"] = row["ppl_mean"]
            line["baseline_extra_ppl"] = row.get("extra_ppl_mean")
            continue
        if row.get("extra_ppl_mean") is not None:
            line["final_extra_ppl"] = row["extra_ppl_mean"]
        line["edits"] = row["step"]
        line["errors"] += row.get("error") is not None
        if row.get("ppl_mean") is not None:
            line["final_ppl"] = row["ppl_mean"]
            successes = row.get("successes") or []
            line["final_all_success"] = sum(successes) / len(successes) if successes else None
        if row.get("collapsed") and line["collapsed_at"] is None:
            line["collapsed_at"] = row["step"]
        line["cumulative_fro"] = row.get("cumulative_fro")
        line["cumulative_spectral"] = row.get("cumulative_spectral")
    return [lines[key] for key in sorted(lines)]


TrajectoryRunner = Callable[..., list[dict[str, Any]]]  # run_one's signature (a Prefect task of it too)
Publisher = Callable[[list[dict[str, Any]], list[Path], str], None]  # (summary lines, figures, run id)


@dataclass(frozen=True)
class SequentialResult(StageResult):
    """A finished sequential run: one summary line per trajectory and the figures."""

    run_id: str
    summary: tuple[dict[str, Any], ...]  # per (group, trial): edits, baseline/final ppl, collapsed_at, norms …
    plots: tuple[str, ...]

    def headline(self) -> str:
        return "; ".join(
            f"{line['group']} trial {line['trial']}: {line['edits']} edits, "
            + ("no collapse" if line["collapsed_at"] is None else f"collapsed at edit {line['collapsed_at']}")
            for line in self.summary
        )


def _step_done(on_progress: OnProgress, before: int, total: int, row: dict[str, Any]) -> None:
    """A trajectory's step as progress over the run (``before``: the steps of the trajectories before it)."""
    on_progress(before + row["step"], total)


def run_sequential(
    config: SequentialConfig,
    warehouse: Warehouse,
    *,
    run_trajectory: TrajectoryRunner = run_one,
    publish: Publisher | None = None,
    log: logging.Logger | logging.LoggerAdapter = logging.getLogger(__name__),
    on_progress: OnProgress = ignore_progress,
) -> SequentialResult:
    """Edit the hard and the normal group sequentially, ``config.trials`` orderings each, with one
    ``runs`` row.

    The unedited model's measurement (step 0) is computed once and shared by the trajectories.
    ``run_trajectory`` runs one trajectory (default :func:`run_one`; the Prefect flow passes its
    task), ``publish`` receives the summary lines and figures before the run is marked completed.
    ``on_progress(done, total)`` counts edit steps over every trajectory (one that collapsed early
    counts whole)."""
    from editcollapse.datasets import load_cases, load_ppl_corpus
    from editcollapse.editors.api import check_ready, hparams_for
    from editcollapse.models import load_model
    from editcollapse.stages.identity import digest, edit_identity
    from editcollapse.stages.sequential.measure import BaselineOnce, CorpusEvaluator
    from editcollapse.stages.sequential.sources import build_groups
    from editcollapse.warehouse.runs import finish_run, start_run

    run_id = config.run_id or config.default_run_id()
    model, method = config.model, config.method
    loaded = load_model(model, device=config.device)
    hparams = hparams_for(loaded, method, config.hparams_file)
    editor_state = check_ready(method, hparams)
    texts = tuple(load_ppl_corpus(config.ppl_corpus).texts)
    evaluate = BaselineOnce(CorpusEvaluator(texts, batch_size=config.ppl_batch_size))
    extra = extra_texts = None
    if config.extra_corpus is not None:
        extra_texts = tuple(load_ppl_corpus(config.extra_corpus).texts)
        extra = BaselineOnce(CorpusEvaluator(extra_texts, batch_size=config.ppl_batch_size, successes=False))
    groups = build_groups(
        config.hard_source,
        load_cases(config.dataset).cases,
        config.size,
        config.seed,
        warehouse=warehouse,
        model=model,
        method=method,
        sweep_run=config.sweep_run,
    )
    identity = edit_identity(
        hparams=hparams,
        editor_state=editor_state,
        model_revision=loaded.revision,
        cases=digest([(m.role, m.case.to_row()) for m in (*groups.hard, *groups.normal)]),
        ppl_texts=texts,
    )
    if extra_texts is not None:
        identity["extra_corpus_digest"] = digest(list(extra_texts))
    run_row = start_run(
        warehouse,
        model=model,
        method=method,
        run_id=run_id,
        stage=TABLE,
        dataset=config.dataset,
        parameters=config.parameters(),
        identity=identity,
        model_revision=loaded.revision,
        ppl_corpus=config.ppl_corpus,
        threshold=config.threshold,
    )
    try:
        log.info(
            "run %s: hard group %d collapsed + %d filled by single-edit perplexity; normal group %d random cases of %s",
            run_id,
            sum(m.role == "collapsed" for m in groups.hard),
            sum(m.role == "top_ppl" for m in groups.hard),
            len(groups.normal),
            config.dataset,
        )
        edit = make_edit(method, hparams)
        rows: list[dict[str, Any]] = []
        trajectories = plan_trajectories(groups, config)
        total, done = sum(len(t.members) for t in trajectories), 0
        on_progress(done, total)
        for trajectory in trajectories:
            on_step = partial(_step_done, on_progress, done, total)
            rows.extend(
                run_trajectory(
                    loaded, edit, evaluate, warehouse, config, run_id, trajectory, on_step=on_step, extra=extra
                )
            )
            done += len(trajectory.members)
            on_progress(done, total)
        lines = summary(rows)
        figures = write_plots(rows, run_folder(warehouse, config, run_id), config, run_id)
        if publish is not None:
            publish(lines, figures, run_id)
    except BaseException:
        finish_run(warehouse, model, method, run_row, status="failed")
        raise
    baseline = next((row["ppl_mean"] for row in rows if row["step"] == 0), None)
    finish_run(
        warehouse,
        model,
        method,
        run_row,
        status="completed",
        n_cases=sum(line["edits"] for line in lines),
        n_errors=sum(line["errors"] for line in lines),
        n_collapsed=sum(line["collapsed_at"] is not None for line in lines),
        baseline_ppl_mean=baseline,
    )
    return SequentialResult(run_id=run_id, summary=tuple(lines), plots=tuple(str(path) for path in figures))
