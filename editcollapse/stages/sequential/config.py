"""What defines a sequential run: every parameter, and the run id digested from those that decide its rows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from editcollapse.core.collapse import COLLAPSE_THRESHOLD
from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.hparams_file import checked_hparams_file, hparams_file_parameters


@dataclass(frozen=True)
class SequentialConfig:
    """Every parameter of a sequential run (the default run id is a digest of those that decide its
    rows: all but ``run_id``, ``ppl_batch_size`` and ``device``)."""

    model: str = EMBEDDED_MODEL
    method: str = "rome"
    hard_source: str = "hardcf"  # the warehouse's hardcf table (filled from its ppl rows) or a HardCF/HardEdit file
    dataset: str = "counterfact"  # the cases the hard ids point to; the normal group is drawn from it
    n_edits: int = 20
    trials: int = 3
    seed: int = 0
    ppl_corpus: str = "me-ppl-1k"  # collapse is judged on this corpus
    ppl_every: int = 1  # evaluate perplexity and edit success every k edits (and at the last)
    threshold: float = COLLAPSE_THRESHOLD
    group_size: int | None = None  # default: n_edits (each trial orders the whole group)
    extra_corpus: str | None = None  # a second perplexity corpus (e.g. me-ppl-1k) …
    extra_every: int = 10  # … evaluated every k edits, at step 0 and at a trajectory's last step
    sweep_run: str | None = None  # hard group from this single-edit sweep's rows only (default: all)
    run_id: str | None = None  # default: :meth:`default_run_id` (same settings → same run → resume)
    ppl_batch_size: int = 16
    device: str | None = None  # where the model runs (default: cuda when available); not part of the run's identity
    hparams_file: str | None = None  # hyperparameters YAML of one's own (default: the packaged file for the model)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams_file", checked_hparams_file(self.hparams_file))
        if self.n_edits < 1 or self.trials < 1:
            raise ValueError(f"n_edits and trials must be ≥ 1, got {self.n_edits} and {self.trials}")
        if self.group_size is not None and self.group_size < self.n_edits:
            raise ValueError(f"group_size ({self.group_size}) must be ≥ n_edits ({self.n_edits})")
        if self.ppl_every < 1 or self.ppl_batch_size < 1:
            raise ValueError(
                f"ppl_every and ppl_batch_size must be ≥ 1, got {self.ppl_every} and {self.ppl_batch_size}"
            )

    @property
    def size(self) -> int:
        return self.group_size or self.n_edits

    def parameters(self) -> dict[str, Any]:
        """Every field that decides the rows; the ones added later are left out while unset, so
        older run ids stay valid. A hyperparameters file adds its content's digest."""
        values = asdict(self)
        del values["run_id"], values["ppl_batch_size"], values["device"]
        for name in ("extra_corpus", "sweep_run"):
            if values[name] is None:
                del values[name]
        if "extra_corpus" not in values:
            del values["extra_every"]
        file = values.pop("hparams_file")
        return values | hparams_file_parameters(file)

    def default_run_id(self) -> str:
        """``seq-<digest>``: re-running the same command resumes the same run."""
        digest = hashlib.sha256(json.dumps(self.parameters(), sort_keys=True).encode()).hexdigest()
        return f"seq-{digest[:12]}"

    def preflight(self) -> None:
        """Refuse, before anything is loaded or written, a model, method, editor, case source, HardCF
        file or perplexity corpus the run would fail on (:mod:`~editcollapse.stages.preflight`)."""
        from editcollapse.stages.preflight import check_cases, check_edit_setup, check_file, check_ppl_corpus

        check_edit_setup(self.model, self.method, seed=self.seed, hparams_file=self.hparams_file)
        check_cases(self.dataset)
        if self.hard_source != "hardcf":
            check_file(self.hard_source, "the hard-case file")
        for corpus in (self.ppl_corpus, self.extra_corpus):
            if corpus is not None:
                check_ppl_corpus(corpus)
