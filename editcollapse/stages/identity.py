"""A run's identity: what decides its numbers beyond the parameters its run id digests.

The run id stays a digest of the stage's parameters (the command alone names the run). The
identity holds the rest, resolved when the run starts: the method's hyperparameters as loaded
(their hash), what the editor loads beyond them (MEND's trained network), the model's revision,
the content of the cases and of the perplexity corpus, and the editcollapse version (the
code-version policy: a change that moves numbers bumps the package version; the exact commit of
each attempt is provenance, recorded in ``run_attempts``). A resume whose identity differs is
refused (:func:`editcollapse.warehouse.runs.start_run`). Every stage that edits builds its identity
here, so the single-edit sweep, the sequential run, the HardEdit filter and the downstream
evaluation refuse alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.warehouse.runs import package_versions

MODEL_ENTRIES = ("hparams_hash", "editor_state", "model_revision")  # what one model of a run decides


def edit_identity(
    *,
    hparams: Any,
    editor_state: str | None,
    model_revision: str | None,
    cases: str | None,
    ppl_texts: Sequence[str] | None,
) -> dict[str, str | None]:
    """The identity of a run that edits with ``hparams`` (the method's loaded
    :class:`~editcollapse.editors.hparams.Hparams`, None when it edits nothing), ``editor_state``
    (:func:`~editcollapse.editors.api.check_ready`'s fingerprint), a model of ``model_revision``,
    over cases of digest ``cases`` (:func:`cases_digest`; None when the stage reads none), measuring
    perplexity on ``ppl_texts`` (None: a stage that measures no perplexity, whose identity has no
    ``ppl_corpus_digest``)."""
    measured = {} if ppl_texts is None else {"ppl_corpus_digest": digest(list(ppl_texts))}
    return {
        "hparams_hash": None if hparams is None else hparams.hash(),
        "editor_state": editor_state,
        "model_revision": model_revision,
        "cases_digest": cases,
        **measured,
        "code_version": package_versions()["editcollapse"],
    }


def cases_digest(cases: Sequence[EditCase], errors: Sequence[Any] = ()) -> str:
    """The digest of ``cases``' content and of the loader's rejected records ``errors`` (file name,
    index, field, reason), so an edited case file is another input."""
    rejected = [(Path(str(error.file)).name, error.index, error.field, error.reason) for error in errors]
    return digest([case.to_row() for case in cases], rejected)


def digest(*values: Any) -> str:
    """A short sha256 of ``values`` as canonical JSON."""
    text = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def models_identity(
    method: str,
    models: Sequence[str],
    *,
    hparams_file: str | None,
    seed: int,
    cases: str | None,
    ppl_texts: Sequence[str],
) -> dict[str, str | None]:
    """:func:`edit_identity` of a run that edits each of ``models`` with ``method`` (the HardEdit
    filter): the model's own entries (hyperparameters, editor state, revision) once per model as
    ``<entry>@<model>``, resolved without loading the model where its revision is known here."""
    from editcollapse.editors.api import check_ready, hparams_for_revision
    from editcollapse.models import load_model
    from editcollapse.models.loading import check_model

    identity: dict[str, str | None] = {}
    for name in models:
        revision = (
            check_model(name, seed=seed) or load_model(name, device="cpu", seed=seed).revision
        )  # a hub model not cached yet
        hparams = hparams_for_revision(method, name, revision, hparams_file)
        entries = edit_identity(
            hparams=hparams,
            editor_state=check_ready(method, hparams),
            model_revision=revision,
            cases=cases,
            ppl_texts=ppl_texts,
        )
        for key in MODEL_ENTRIES:
            identity[f"{key}@{name}"] = entries.pop(key)
        identity |= entries
    return identity
