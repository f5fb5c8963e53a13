"""What defines a downstream run: which model and edits, which tasks, how many items (the default
run id digests every field but ``run_id`` and ``device``)."""

from __future__ import annotations

from dataclasses import dataclass

from editcollapse.core.collapse import DEFAULT_PPL_CORPUS
from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.hparams_file import checked_hparams_file


@dataclass(frozen=True)
class DownstreamConfig:
    """What a downstream run evaluates (the default run id digests every field but ``run_id`` and
    ``device``)."""

    model: str = EMBEDDED_MODEL
    edits: str = "extremes"  # none | extremes | hardcf | hardedit | sequential | comma-separated case ids
    tasks: tuple[str, ...] = ()  # lm-eval task names and offline suites (default: the offline suites found here)
    limit: int | None = 50  # items per task (None: all)
    method: str = "rome"
    k: int = 2  # with edits="extremes": how many most and least damaging edits
    max_edits: int = 10  # with hardcf / hardedit / sequential: at most this many
    source_run: str | None = None  # the sweep or sequential run to take edits from (default: the largest)
    ppl_corpus: str = DEFAULT_PPL_CORPUS
    include_path: str | None = None  # a folder of your own lm-eval task YAMLs
    mmlu_file: str | None = None  # MMLU JSON for ec_mmlu_sub
    items: int = 500  # items built per offline suite
    batch_size: int = 8
    bootstrap_iters: int = 1000
    seed: int = 0
    run_id: str | None = None  # default: a digest of the parameters (same settings → same run → resume)
    device: str | None = None
    hparams_file: str | None = None  # the hyperparameters YAML the edits were made with (default: the packaged one)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams_file", checked_hparams_file(self.hparams_file))
        for name in ("limit", "items", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")

    def preflight(self) -> None:
        """Refuse, before anything is loaded or written, a model, method, editor, perplexity corpus or
        file the run would fail on (:mod:`~editcollapse.stages.preflight`)."""
        from editcollapse.models.loading import check_model
        from editcollapse.stages.preflight import check_edit_setup, check_file, check_ppl_corpus
        from editcollapse.stages.sweep.plan import resolve_ppl_corpus

        if self.edits == "none":  # the unedited model only
            check_model(self.model, seed=self.seed)
        else:
            check_edit_setup(self.model, self.method, seed=self.seed, hparams_file=self.hparams_file)
        check_ppl_corpus(resolve_ppl_corpus(self.ppl_corpus))
        check_file(self.include_path, "--include-path")
        check_file(self.mmlu_file, "--mmlu-file")
