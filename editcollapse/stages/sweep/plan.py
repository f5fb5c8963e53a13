"""What a single-edit sweep is: its parameters, its run id, its cases and their shards.

A sweep is defined by :class:`SweepConfig`. Its cases are loaded in a fixed order and cut into
fixed-size shards, so shard ``i`` always holds the same cases: a shard is the unit of work, of
resume and of the warehouse part name. The default run id is a digest of the parameters, so
running the same command again resumes (and, when finished, recomputes nothing).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS
from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.hparams_file import checked_hparams_file, hparams_file_parameters

log = logging.getLogger(__name__)

FALLBACK_PPL_CORPUS = "embedded-50"  # built from packaged English text: works offline
SELECTION = ("screen_run", "top", "select")  # a screened selection (editcollapse.stages.sweep.selection)
DEFAULT_BATCH = 10  # edits per batch of the batched engine (editcollapse.stages.sweep.batched); 1: one at a time


@dataclass(frozen=True)
class SweepConfig:
    """Everything that defines a sweep's numbers (and so its run id). An empty ``run_id`` is
    derived from the parameters; call :meth:`resolved` before running, so a derived id names the
    perplexity corpus actually used."""

    model: str = EMBEDDED_MODEL
    method: str = "rome"
    dataset: str = "geofacts"
    limit: int | None = None
    shard_size: int = 10
    ppl_corpus: str = DEFAULT_PPL_CORPUS
    threshold: float = COLLAPSE_THRESHOLD
    seed: int = 0
    ppl_batch_size: int = 16
    device: str | None = None
    run_id: str = field(default="")
    batch: int = DEFAULT_BATCH  # edits computed together (ROME/r-ROME); 1 = the one-at-a-time reference loop
    retry_errors: bool = False  # compute again the cases stored as errors (status "error") of finished shards
    hparams_file: str | None = None  # hyperparameters YAML of one's own (default: the packaged file for the model)
    screen_run: str | None = None  # sweep only cases of this screen run (editcollapse.stages.sweep.selection) …
    top: int | None = None  # … the riskiest N of them …
    select: str | None = None  # … that pass this SQL condition over the screen table's columns

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {self.shard_size}")
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1 (or None for all cases), got {self.limit}")
        self._check_selection()
        object.__setattr__(self, "hparams_file", checked_hparams_file(self.hparams_file))
        if not self.run_id:
            object.__setattr__(self, "run_id", default_run_id(self.parameters()))

    def _check_selection(self) -> None:
        if self.screen_run is None:
            if self.top is not None or self.select is not None:
                raise ValueError("top and select choose among a screen run's cases — name it (--screen-run)")
            return
        if self.limit is not None:
            raise ValueError("limit and screen_run both choose the cases — use top (--top N) instead of limit")
        if self.top is not None and self.top < 1:
            raise ValueError(f"top must be at least 1, got {self.top}")

    def parameters(self) -> dict[str, Any]:
        """The parameters recorded in the ``runs`` row (the run id, device, batch and retry_errors
        excluded: they do not change the numbers — the batched engine equals the one-at-a-time
        loop up to float rounding; each ``edits`` row's diagnostics record its ``batch_size``). A
        hyperparameters file adds its path and its content's digest (without one the parameters,
        and so the run ids, are those of before the option existed)."""
        params = asdict(self)
        for execution_option in ("run_id", "device", "batch", "retry_errors"):
            params.pop(execution_option)
        file = params.pop("hparams_file")
        selection = {name: params.pop(name) for name in SELECTION}
        if self.screen_run is None:
            selection = {}  # without one the parameters, and so the run ids, are those of before it existed
        return params | hparams_file_parameters(file) | selection

    def resolved(self) -> SweepConfig:
        """This config with its perplexity corpus resolved (:func:`resolve_ppl_corpus`: ME-PPL-50
        falls back to the embedded corpus offline). A run id derived from the parameters is derived
        again from the resolved ones; a run id given explicitly is kept."""
        corpus = resolve_ppl_corpus(self.ppl_corpus)
        if corpus == self.ppl_corpus:
            return self
        derived = self.run_id == default_run_id(self.parameters())
        return replace(self, ppl_corpus=corpus, run_id="" if derived else self.run_id)

    def preflight(self) -> None:
        """Refuse, before anything is loaded or written, what the run would fail on: the model, the
        method and its editor's readiness, the cases and the perplexity corpus (:mod:`~editcollapse.stages.preflight`)."""
        from editcollapse.stages.preflight import check_cases, check_edit_setup, check_ppl_corpus

        check_edit_setup(self.model, self.method, seed=self.seed, hparams_file=self.hparams_file)
        check_cases(self.dataset)
        check_ppl_corpus(resolve_ppl_corpus(self.ppl_corpus))


def default_run_id(parameters: dict[str, Any], prefix: str = "sweep") -> str:
    """``<prefix>-<12 hex>``: a digest of the parameters (same command → same run → resume)."""
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}-{digest[:12]}"


def resolve_ppl_corpus(name: str) -> str:
    """``name``, or the embedded corpus when the released ME-PPL-50 file cannot be found offline
    (logged: the corpus actually used is what the run and every ``ppl`` row record)."""
    from editcollapse.datasets import load_ppl_corpus
    from editcollapse.datasets.download import DataUnavailable

    if name != DEFAULT_PPL_CORPUS:
        return name
    try:
        load_ppl_corpus(name)
    except DataUnavailable as error:
        message = f"ME-PPL-50 is not available here ({str(error).splitlines()[0]}); measuring perplexity on {FALLBACK_PPL_CORPUS} instead"
        if message not in _FALLBACKS_SAID:  # the preflight, the run and each stage of a study resolve it
            _FALLBACKS_SAID.add(message)
            log.warning(message)
        return FALLBACK_PPL_CORPUS
    return name


_FALLBACKS_SAID: set[str] = set()  # the fallback is said once per process


def shard_cases(cases: list[EditCase], shard_size: int) -> list[list[EditCase]]:
    """Consecutive shards of ``shard_size`` cases (the last may be shorter)."""
    return [cases[start : start + shard_size] for start in range(0, len(cases), shard_size)]


def check_unique_ids(cases: list[EditCase]) -> None:
    """Case ids key every row; two cases with one id would make rows ambiguous."""
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise ValueError(f"duplicate case id {case.case_id!r} in the sweep's cases")
        seen.add(case.case_id)
