"""A sweep's identity: what decides its numbers beyond the parameters its run id digests.

The run id stays a digest of :meth:`SweepConfig.parameters` (the command alone names the run). The
identity holds the rest, resolved when the run starts: the method's hyperparameters as loaded
(their hash), what the editor loads beyond them (MEND's trained network), the model's revision,
the content of the cases and of the perplexity corpus, and the editcollapse version (the code-version policy: a change that moves numbers bumps the package
version; the exact commit of each attempt is provenance, recorded in ``run_attempts``). A resume
whose identity differs is refused (:func:`editcollapse.warehouse.runs.start_run`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.stages.sweep.resources import SweepResources
from editcollapse.warehouse.runs import package_versions


def sweep_identity(
    resources: SweepResources, cases: Sequence[EditCase], errors: Sequence[Any]
) -> dict[str, str | None]:
    """The identity of a sweep over ``cases`` (and the loader's rejected ``errors``) with ``resources``."""
    rejected = [(Path(str(error.file)).name, error.index, error.field, error.reason) for error in errors]
    return {
        "hparams_hash": resources.hparams.hash(),
        "editor_state": resources.editor_state,
        "model_revision": resources.loaded.revision,
        "cases_digest": digest([case.to_row() for case in cases], rejected),
        "ppl_corpus_digest": digest(resources.ppl_texts),
        "code_version": package_versions()["editcollapse"],
    }


def digest(*values: Any) -> str:
    """A short sha256 of ``values`` as canonical JSON."""
    text = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
