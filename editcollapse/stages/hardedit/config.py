"""What defines a HardEdit generation run and a HardEdit filter run.

Each config holds every parameter of its stage that is not an execution detail (warehouse, GPU
slot, logger); the CLI, the Prefect flows and the study build one and hand it to
:func:`~editcollapse.stages.hardedit.runs.run_generation` or
:func:`~editcollapse.stages.hardedit.runs.run_filter`. Without an explicit ``run_id`` a run is
named by a digest of the parameters that shape its rows, so the same config resumes the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS
from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.hparams_file import checked_hparams_file
from editcollapse.stages.hardedit.backends import BACKENDS
from editcollapse.stages.hardedit.prompt import PAPER_SEEDS


def _check_at_least(name: str, value: float | None, minimum: float, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or value < minimum:
        unset = " (or None for no limit)" if optional else ""
        raise ValueError(f"{name} must be at least {minimum:g}{unset}, got {value}")


def generator_fields(backend: str, model: str | None) -> dict[str, str | None]:
    """``local_model`` and ``model`` of a :class:`GenerationConfig` from one ``model`` option: the
    local backend's model (default the embedded one) or the openai backend's (default from the
    environment), as the CLI and the study name the generator."""
    if backend == "local":
        return {"local_model": model or EMBEDDED_MODEL, "model": None}
    return {"local_model": EMBEDDED_MODEL, "model": model}


@dataclass(frozen=True)
class GenerationConfig:
    """One generation run: the chat backend, the prompt's ingredients, the budget and the retries.

    ``model``/``base_url``/``temperature``/``timeout_s``/``max_retries``/``backoff_initial_s``
    left at None take the backend's defaults (for ``openai``: the ``EDITCOLLAPSE_LLM_*``
    variables, then the client settings)."""

    backend: str = "local"  # one of BACKENDS
    n_calls: int = 5  # generation calls, each asking for n_points samples
    local_model: str = EMBEDDED_MODEL  # model of the local backend
    model: str | None = None  # model of the openai backend
    base_url: str | None = None  # endpoint of the openai backend
    seed: int = 0
    seeds_source: str = PAPER_SEEDS  # 'paper' or a load_cases source (hardcf, a HardCF/HardEdit file …)
    n_seeds: int = 30  # seed examples per prompt (the paper: 30)
    subjects_file: str | None = None  # subject repository JSON (default: the packaged one)
    template_file: str | None = None  # prompt template (default: the packaged Figure 12 one)
    subjects_per_prompt: int = 10
    n_points: int = 10  # samples asked for per call
    max_requests: int | None = None  # budget: requests sent, retries included
    max_tokens: int | None = None  # budget: prompt + completion tokens
    requests_per_minute: float | None = 20.0  # rate limit of the openai backend (0 or None: none)
    max_new_tokens: int = 1024  # completion length cap
    temperature: float | None = None  # default 0.7 local, 1.0 openai
    dedupe_across_runs: bool = True  # reject subjects valid in any earlier run, not only this one
    run_id: str | None = None  # default: a digest of the parameters
    timeout_s: float | None = None
    max_retries: int | None = None
    backoff_initial_s: float | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("n_calls", "n_seeds", "subjects_per_prompt", "n_points", "max_new_tokens"):
            _check_at_least(name, getattr(self, name), 1)
        for name in ("max_requests", "max_tokens"):
            _check_at_least(name, getattr(self, name), 1, optional=True)
        for name in ("requests_per_minute", "temperature", "max_retries", "backoff_initial_s"):
            _check_at_least(name, getattr(self, name), 0, optional=True)
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive (or None for the client default), got {self.timeout_s}")

    def preflight(self) -> None:
        """Refuse, before anything is loaded or written, a local model, seed source or file the run
        would fail on (:mod:`~editcollapse.stages.preflight`)."""
        from editcollapse.models.loading import check_model
        from editcollapse.stages.preflight import check_cases, check_file

        if self.backend == "local":
            check_model(self.local_model, seed=self.seed)
        if self.seeds_source != PAPER_SEEDS:
            check_cases(self.seeds_source)
        check_file(self.subjects_file, "the subject repository")
        check_file(self.template_file, "the prompt template")


@dataclass(frozen=True)
class FilterConfig:
    """One filter run: which candidates, which reference models and editor, how collapse is judged,
    where the kept candidates are exported."""

    reference_models: tuple[str, ...] = (EMBEDDED_MODEL,)  # the paper: gpt2-xl
    method: str = "rome"  # editing method of the filter
    candidate_runs: tuple[str, ...] = ()  # only candidates of these generation runs (default: all)
    limit: int | None = None  # first N valid candidates
    ppl_corpus: str = DEFAULT_PPL_CORPUS
    threshold: float = COLLAPSE_THRESHOLD  # keep candidates whose edited model's ME-PPL exceeds this
    shard_size: int = 10
    seed: int = 0
    export: str | None = None  # JSON export (default <warehouse>/exports/<run id>.json)
    run_id: str | None = None  # default: a digest of the parameters and the candidate set
    device: str | None = None
    hparams_file: str | None = None  # the editor's hyperparameters YAML of one's own (one reference model only)

    def __post_init__(self) -> None:
        if not self.reference_models:
            raise ValueError(f"reference_models must name at least one model (e.g. {EMBEDDED_MODEL})")
        if self.hparams_file is not None and len(self.reference_models) > 1:
            raise ValueError(
                f"an hparams file fits one model, got {len(self.reference_models)} reference models: run the filter per model"
            )
        object.__setattr__(self, "hparams_file", checked_hparams_file(self.hparams_file))
        _check_at_least("shard_size", self.shard_size, 1)
        _check_at_least("limit", self.limit, 1, optional=True)

    def preflight(self) -> None:
        """Refuse, before anything is loaded or written, a reference model, method, editor or
        perplexity corpus the run would fail on (:mod:`~editcollapse.stages.preflight`)."""
        from editcollapse.stages.preflight import check_edit_setup, check_ppl_corpus
        from editcollapse.stages.sweep.plan import resolve_ppl_corpus

        for model in self.reference_models:
            check_edit_setup(model, self.method, seed=self.seed, hparams_file=self.hparams_file)
        check_ppl_corpus(resolve_ppl_corpus(self.ppl_corpus))
