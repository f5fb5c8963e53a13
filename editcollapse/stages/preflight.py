"""The checks a stage runs before it starts (its config's ``preflight()``): cheap, with no model
loaded and nothing written, so a mistake is one message before any ``runs`` row or Prefect flow run.

Each check calls the resolution the run itself uses (:func:`~editcollapse.models.loading.check_model`,
:func:`~editcollapse.datasets.loading.check_source`, the method registry, the editor's readiness), so
the preflight and the run fail alike. The command line calls ``config.preflight()`` before it starts
Prefect; each flow calls it first too, so a deployment run fails with the same message.
"""

from __future__ import annotations

from pathlib import Path


def check_edit_setup(model: str, method: str, *, seed: int = 0, hparams_file: str | None = None) -> None:
    """``model`` loads here, ``method`` is known and has hyperparameters for it (``hparams_file``, or
    the packaged file), and its editor is
    ready (MEND trained, the key covariance cached or computable); readiness is checked when the
    model's revision is known without loading it (not for a hub model still to be downloaded)."""
    from editcollapse.editors.api import check_ready, hparams_for_revision
    from editcollapse.models.loading import check_model

    revision = check_model(model, seed=seed)
    hparams = hparams_for_revision(method, model, revision, hparams_file)
    if revision is not None:
        check_ready(method, hparams)


def check_cases(source: str) -> None:
    """``source`` names cases here (a known source, a file or a folder)."""
    from editcollapse.datasets.loading import check_source

    check_source(source)


def check_ppl_corpus(name: str) -> None:
    """``name`` is a perplexity corpus here (known, or a file)."""
    from editcollapse.datasets.ppl import load_ppl_corpus

    load_ppl_corpus(name)


def check_file(path: str | None, what: str) -> None:
    """``path`` (when given) exists; ``what`` names it in the message (e.g. ``"--mmlu-file"``)."""
    if path is not None and not Path(path).expanduser().exists():
        raise FileNotFoundError(f"{what} {path} does not exist — pass an existing file or folder")
