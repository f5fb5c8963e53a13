"""The screen stage: every case's ROME key side and risk bound, in shards of the ``screen`` table.

Cases are loaded and cut into shards as for the sweep (shard ``i`` always holds the same cases).
A shard is computed in batches of ``config.batch`` cases (one forward pass each, stopping at the
rewrite module) and written as one Parquet part: the part is the shard's completion mark, written
atomically, so a run killed at any point resumes by computing the shards without a part, never
duplicating a row. A case whose subject cannot be located becomes an ``invalid`` row, a case the
forward pass fails on an ``error`` row (a batch that fails is redone case by case); the run goes on.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.editors.rome.screen import ScreenedCase, screen_cases
from editcollapse.editors.rome.site import ROMESite
from editcollapse.stages.identity import cases_digest, edit_identity
from editcollapse.stages.progress import OnProgress, ignore_progress
from editcollapse.stages.result import StageResult, bulky
from editcollapse.stages.screen.config import ScreenConfig
from editcollapse.stages.sweep.plan import check_unique_ids, shard_cases
from editcollapse.stages.sweep.run import invalid_rows
from editcollapse.warehouse.runs import finish_run, start_run
from editcollapse.warehouse.store import Warehouse

log = logging.getLogger(__name__)

STAGE = "screen"
TABLE = "screen"
INVALID_PART = "invalid"
N_RISKIEST = 10


@dataclass(frozen=True)
class ScreenResult(StageResult):
    """A finished screen: its counts, the spread of the risk and the riskiest cases."""

    run_id: str
    model: str
    method: str
    status: str
    n_cases: int
    n_ok: int
    n_invalid: int
    n_errors: int
    risk_median: float | None
    risk_max: float | None
    seconds: float  # wall clock of this invocation (a resume computes only the missing shards)
    riskiest: list[dict[str, Any]] = bulky()  # the N_RISKIEST ``ok`` rows of highest risk, riskiest first

    def headline(self) -> str:
        spread = (
            "no risk measured"
            if self.risk_max is None
            else f"risk median {self.risk_median:.3g}, max {self.risk_max:.3g}"
        )
        return (
            f"{self.n_ok} of {self.n_cases} cases screened ({self.n_invalid} invalid, {self.n_errors} errors); {spread}"
        )


def load_screen_cases(config: ScreenConfig) -> tuple[list[EditCase], list[Any]]:
    """The screen's valid cases (in the loader's order) and the loader's rejected records."""
    from editcollapse.datasets import load_cases

    loaded = load_cases(config.dataset, limit=config.limit, seed=config.seed)
    return list(loaded.cases), list(loaded.errors)


def run_screen(
    config: ScreenConfig,
    warehouse: Warehouse,
    *,
    cases: list[EditCase] | None = None,
    on_progress: OnProgress = ignore_progress,
) -> ScreenResult:
    """Screen every case of ``config.dataset`` (or ``cases``) that the warehouse lacks; return the run's
    result. ``on_progress(done, total)`` counts cases, those of stored shards as done."""
    from editcollapse.editors.api import check_ready, hparams_for
    from editcollapse.models import load_model

    started = time.perf_counter()
    errors: list[Any] = []
    if cases is None:
        cases, errors = load_screen_cases(config)
    elif config.limit is not None:
        cases = cases[: config.limit]
    if not cases:
        raise ValueError(f"no valid cases to screen in {config.dataset!r} ({len(errors)} rejected records)")
    check_unique_ids(cases)
    shards = shard_cases(cases, config.shard_size)
    loaded = load_model(config.model, device=config.device, seed=config.seed)
    hparams = hparams_for(loaded, config.method, config.hparams_file)
    identity = edit_identity(
        hparams=hparams,
        editor_state=check_ready(config.method, hparams),
        model_revision=loaded.revision,
        cases=cases_digest(cases, errors),
        ppl_texts=None,  # the screen measures no perplexity
    )
    keys = (config.model, config.method, config.run_id)
    row = start_run(
        warehouse,
        model=config.model,
        method=config.method,
        run_id=config.run_id,
        stage=STAGE,
        dataset=config.dataset,
        parameters=config.parameters(),
        identity=identity,
        model_revision=loaded.revision,
        n_shards=len(shards),
    )
    try:
        warehouse.remove_stray_temps(TABLE, *keys)
        if errors and not warehouse.has_part(TABLE, *keys, INVALID_PART):
            warehouse.write_part(
                TABLE,
                invalid_rows(config.run_id, errors),
                model=config.model,
                method=config.method,
                run_id=config.run_id,
                shard=INVALID_PART,
            )
        pending = [index for index in range(len(shards)) if not shard_done(warehouse, config, index)]
        done = len(cases) - sum(len(shards[index]) for index in pending)
        on_progress(done, len(cases))
        if pending:
            consistent = config.method == "r-rome"
            site = ROMESite.build(loaded.model, loaded.tokenizer, loaded.arch, hparams, consistent_keys=consistent)
        for index in pending:
            rows: list[dict[str, Any]] = []
            for start in range(0, len(shards[index]), config.batch):
                batch = shards[index][start : start + config.batch]
                outcomes = _screened(site, batch)
                rows.extend(
                    screen_row(config.run_id, index, case, outcome, site.hparams_hash)
                    for case, outcome in zip(batch, outcomes, strict=True)
                )
                done += len(batch)
                on_progress(done, len(cases))
            warehouse.write_part(
                TABLE, rows, model=config.model, method=config.method, run_id=config.run_id, shard=index
            )
    except BaseException:
        with contextlib.suppress(Exception):  # a warehouse that cannot record it: the original error matters
            finish_run(warehouse, config.model, config.method, row, status="failed")
        raise
    result = screen_summary(warehouse, config, seconds=time.perf_counter() - started)
    finish_run(
        warehouse,
        config.model,
        config.method,
        row,
        status=result.status,
        n_cases=result.n_cases,
        n_errors=result.n_errors,
    )
    return result


def shard_done(warehouse: Warehouse, config: ScreenConfig, shard: int) -> bool:
    """Whether the shard's part is there and sound (an unsound one is quarantined: computed again)."""
    keys = (config.model, config.method, config.run_id, shard)
    return warehouse.has_part(TABLE, *keys) and warehouse.sound_parts((TABLE,), *keys)


def _screened(site: ROMESite, cases: Sequence[EditCase]) -> list[ScreenedCase | Exception]:
    """:func:`screen_cases`, or, when the batch fails as a whole, each case alone (its own error)."""
    try:
        return list(screen_cases(site, cases))
    except Exception as error:  # noqa: BLE001 — a failing case is a row, the run goes on
        if len(cases) == 1:
            return [error]
        log.warning("a batch of %d cases failed (%s); screening them one by one", len(cases), error)
        return [outcome for case in cases for outcome in _screened(site, [case])]


def screen_row(
    run_id: str, shard: int, case: EditCase, outcome: ScreenedCase | Exception, hparams_hash: str
) -> dict[str, Any]:
    """The ``screen`` row of one case: its values, or its status ``invalid`` (a ``ValueError``:
    the case cannot be edited as given) or ``error`` with the exception."""
    row = {
        "run_id": run_id,
        "case_id": case.case_id,
        "shard": shard,
        "subject": case.subject,
        "prompt": case.prompt,
        "hparams_hash": hparams_hash,
    }
    if isinstance(outcome, ScreenedCase):
        return {**row, "status": "ok", **outcome.values()}
    status = "invalid" if isinstance(outcome, ValueError) else "error"
    return {**row, "status": status, "error_type": type(outcome).__name__, "error": str(outcome)}


def screen_summary(warehouse: Warehouse, config: ScreenConfig, *, seconds: float) -> ScreenResult:
    """The stored run's counts, risk spread and riskiest cases."""
    from editcollapse.warehouse import connect

    connection = connect(warehouse)
    query = "FROM screen WHERE run_id = ? AND model = ? AND method = ?"
    keys = [config.run_id, config.model, config.method]
    n_cases, n_ok, n_invalid, n_errors, median, maximum = connection.execute(
        "SELECT count(*), count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'invalid'), "
        "count(*) FILTER (status = 'error'), median(risk), max(risk) " + query,
        keys,
    ).fetchone()
    riskiest = connection.execute(
        "SELECT case_id, risk, denominator, subject, prompt "
        + query
        + " AND status = 'ok' ORDER BY risk DESC, case_id LIMIT ?",
        [*keys, N_RISKIEST],
    ).fetchall()
    return ScreenResult(
        run_id=config.run_id,
        model=config.model,
        method=config.method,
        status="completed_with_errors" if n_errors else "completed",
        n_cases=n_cases,
        n_ok=n_ok,
        n_invalid=n_invalid,
        n_errors=n_errors,
        risk_median=None if median is None else float(median),
        risk_max=None if maximum is None else float(maximum),
        seconds=seconds,
        riskiest=[
            dict(zip(("case_id", "risk", "denominator", "subject", "prompt"), values, strict=True))
            for values in riskiest
        ],
    )
