"""What a MEND training trains: the model, its data and the hparams changed from the packaged ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.hparams_file import checked_hparams_file


@dataclass(frozen=True)
class MENDTrainConfig:
    """The network a MEND training produces (or resumes, or reuses) and what it measures afterwards.

    ``hparams_file`` (a YAML of one's own, default: the packaged file for the model), ``max_iters``
    and ``overrides`` decide the hparams, hence the stored network's identity: a sweep uses the
    network trained with the hparams it is given (the same ``--hparams`` file). ``overrides`` is a mapping of hparams YAML keys to
    values (``{"val_interval": 3}``), the form a deployment's YAML, the Prefect UI and JSON write; it
    is read, never changed.
    """

    model: str = EMBEDDED_MODEL
    dataset: str | None = None  # training cases (default: the hparams' train_data, the embedded geofacts split)
    val_dataset: str | None = None  # held-out cases (default: a seeded split of the training cases by subject)
    max_iters: int | None = None  # iterations (default: the hparams'; set, it wins over overrides["max_iters"])
    overrides: dict[str, Any] = field(default_factory=dict)
    device: str | None = None  # cpu, cuda, … (default: cuda when present)
    resume: bool = True  # continue from the last checkpoint (False: start over)
    heldout: int = 0  # after training, edit and measure this many held-out cases
    hparams_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams_file", checked_hparams_file(self.hparams_file))
        if self.max_iters is not None and self.max_iters < 1:
            raise ValueError(f"max_iters must be at least 1 (got {self.max_iters}); leave it unset for the hparams'")
        if self.heldout < 0:
            raise ValueError(f"heldout must be 0 (no held-out edits) or more (got {self.heldout})")

    def preflight(self) -> None:
        """Refuse, before anything is loaded or written, a model, MEND hyperparameters or training data
        the training would fail on (:mod:`~editcollapse.stages.preflight`)."""
        from editcollapse.editors.api import load_hparams
        from editcollapse.models.loading import check_model
        from editcollapse.stages.preflight import check_cases

        check_model(self.model)
        load_hparams("mend", self.model)
        for source in (self.dataset, self.val_dataset):
            if source is not None:
                check_cases(source)
