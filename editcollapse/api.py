"""editcollapse from Python (a notebook): load a model, edit it with any method, measure, sweep, query.

A thin facade over the package's own functions, in the order a notebook uses them (the page
``docs/python-api.md`` has a runnable example). An edit is a :class:`Delta` and leaves the model as it
was: measure it with ``delta=``, or apply it in place — ``backup = delta.apply(lm.model)`` and
``backup.restore()`` puts the weights back bit for bit; ``with delta.applied(lm.model):`` does both.
No Prefect here: a sweep runs in this process, as ``editcollapse sweep --no-prefect`` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from editcollapse.core.case import EditCase, NeighborhoodPrompt
from editcollapse.core.collapse import DEFAULT_PPL_CORPUS
from editcollapse.core.delta import Delta
from editcollapse.datasets import load_cases, load_ppl_corpus
from editcollapse.editors.api import check_ready, edit_after, get_editor, hparams_for, methods
from editcollapse.editors.hparams import Hparams
from editcollapse.evaluation.edit_metrics import locality_reference, measure_cases
from editcollapse.evaluation.perplexity import PerplexityResult
from editcollapse.evaluation.perplexity import perplexity as corpus_perplexity
from editcollapse.models import LoadedModel, load_model
from editcollapse.stages.sweep.plan import SweepConfig, resolve_ppl_corpus
from editcollapse.stages.sweep.summary import SweepResult
from editcollapse.warehouse import Warehouse, connect, scan
from editcollapse.warehouse.catalog import check_query

__all__ = [
    "Delta",
    "EditCase",
    "Hparams",
    "LoadedModel",
    "NeighborhoodPrompt",
    "connect",
    "edit",
    "load_cases",
    "load_model",
    "measure",
    "methods",
    "perplexity",
    "query",
    "resolve_hparams",
    "scan",
    "sweep",
]

HparamsSource = str | os.PathLike[str] | Mapping[str, Any] | Hparams | None
Cases = EditCase | Sequence[EditCase]


def resolve_hparams(lm: LoadedModel, method: str, hparams: HparamsSource = None) -> Hparams:
    """``method``'s hyperparameters for ``lm``: the packaged file (None), a YAML file of one's own (a
    path), the packaged ones with some keys changed (a mapping of YAML keys), or ``hparams`` itself."""
    if isinstance(hparams, Hparams):
        return hparams
    if isinstance(hparams, Mapping):
        return hparams_for(lm, method).updated(hparams, source="hparams mapping")
    return hparams_for(lm, method, hparams)


def edit(
    lm: LoadedModel, cases: Cases, method: str = "rome", hparams: HparamsSource = None, earlier: Delta | None = None
) -> Delta:
    """The weight change ``method`` computes for ``cases`` (ROME, r-ROME, FT, MEND: one case; MEMIT,
    AlphaEdit: several); ``lm`` is left as it was. In a sequence, apply the earlier Deltas to ``lm``
    and pass their sum as ``earlier``: AlphaEdit keeps their keys preserved, the other methods only
    need the edited model. An editor that cannot edit yet (a key covariance it cannot compute, an
    untrained MEND) is refused with the command that fixes it."""
    chosen = resolve_hparams(lm, method, hparams)
    check_ready(method, chosen)
    return edit_after(method, get_editor(method), lm.model, lm.tokenizer, lm.arch, _listed(cases), chosen, earlier)


def measure(
    lm: LoadedModel, cases: Cases, delta: Delta | None = None, *, batch_size: int = 32
) -> list[dict[str, float]]:
    """Each case's edit metrics (efficacy, paraphrase, neighbourhood …, see
    :mod:`editcollapse.evaluation.edit_metrics`) with ``delta`` applied while measuring;
    ``locality_acc`` compares with ``lm`` unedited."""
    listed = _listed(cases)
    reference = locality_reference(lm.model, lm.tokenizer, listed, batch_size=batch_size)
    with _applied(lm, delta):
        return measure_cases(lm.model, lm.tokenizer, listed, reference=reference, batch_size=batch_size)


def perplexity(
    lm: LoadedModel,
    corpus: str | Sequence[str] = DEFAULT_PPL_CORPUS,
    delta: Delta | None = None,
    *,
    batch_size: int = 16,
) -> PerplexityResult:
    """Perplexity of ``lm`` (``delta`` applied while measuring) on ``corpus``: a corpus name (ME-PPL-50
    falls back to embedded-50 offline) or file, or a list of texts. ``.mean_per_text`` is ME-PPL."""
    texts = load_ppl_corpus(resolve_ppl_corpus(corpus)).texts if isinstance(corpus, str) else corpus
    with _applied(lm, delta):
        return corpus_perplexity(lm.model, lm.tokenizer, list(texts), batch_size=batch_size)


def sweep(
    warehouse: str | os.PathLike[str] | None = None,
    *,
    hparams: str | os.PathLike[str] | None = None,
    cases: list[EditCase] | None = None,
    **config: Any,
) -> SweepResult:
    """A single-edit sweep into ``warehouse`` (default ``$EDITCOLLAPSE_WAREHOUSE`` or ``./warehouse``):
    ``config`` holds :class:`~editcollapse.stages.sweep.plan.SweepConfig` fields (``model``,
    ``method``, ``dataset``, ``limit``, ``ppl_corpus`` …), ``hparams`` a YAML file of one's own,
    ``cases`` replaces the dataset's. The same call again resumes (and computes nothing when done)."""
    from editcollapse.stages.sweep.run import run_sweep

    spec = SweepConfig(hparams_file=hparams, **config)
    return run_sweep(spec, Warehouse(warehouse), cases=cases)


def query(warehouse: str | os.PathLike[str] | None, sql: str) -> Any:
    """The result of one SQL query over ``warehouse``'s tables (read-only DuckDB views), as a polars DataFrame."""
    return connect(warehouse).sql(check_query(sql)).pl()


def _listed(cases: Cases) -> list[EditCase]:
    return [cases] if isinstance(cases, EditCase) else list(cases)


def _applied(lm: LoadedModel, delta: Delta | None) -> AbstractContextManager[Any]:
    return nullcontext() if delta is None else delta.applied(lm.model)
