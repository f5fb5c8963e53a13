"""The whole study as a table of stages: what each stage needs, and its config built from the study's.

:class:`StudyConfig` holds what every stage shares (model, method, cases, perplexity corpus,
threshold, seed, device, the editor's hyperparameters file) and the few knobs that belong to one stage (:class:`SequentialPart`,
:class:`HardEditPart`, :class:`DownstreamPart`). :data:`STUDY_STEPS` lists the steps in order;
each builds its stage's own config from the study's and the results of the steps before it (the
HardCF selection reads the sweep's run, the HardEdit filter the generation's run). Running the
steps is the orchestration layer's job (``editcollapse.orchestration.flows.study``); this module
is pure, so the mapping from the study to each stage is tested without Prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS
from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.hparams_file import checked_hparams_file
from editcollapse.stages.analysis.config import AnalysisConfig
from editcollapse.stages.downstream.config import DownstreamConfig
from editcollapse.stages.hardcf.config import HardCFConfig
from editcollapse.stages.hardedit.config import FilterConfig, GenerationConfig, generator_fields
from editcollapse.stages.result import StageResult
from editcollapse.stages.sequential.config import SequentialConfig
from editcollapse.stages.sweep.plan import DEFAULT_BATCH, SweepConfig, resolve_ppl_corpus

STAGES = ("sweep", "hardcf", "sequential", "hardedit", "downstream", "analysis")

Results = Mapping[str, StageResult]


@dataclass(frozen=True)
class SequentialPart:
    """The sequential stage's own knobs: edits per trajectory and trials per group."""

    n_edits: int = 20
    trials: int = 3


@dataclass(frozen=True)
class HardEditPart:
    """HardEdit's own knobs: the generator (``local``: an offline chat model, ``model`` or the
    embedded default; ``openai``: ``model`` at ``base_url`` or the ``EDITCOLLAPSE_LLM_*``
    variables), its calls and their completion length, and how many valid candidates the filter edits."""

    backend: str = "local"
    calls: int = 5
    max_new_tokens: int = GenerationConfig.max_new_tokens
    model: str | None = None
    base_url: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class DownstreamPart:
    """The downstream stage's own knobs: which edits (``extremes``: the ``k`` most and least
    damaging of the sweep), which lm-eval tasks (default: the offline suites), documents per task."""

    edits: str = "extremes"
    tasks: tuple[str, ...] = ()
    limit: int | None = 50
    k: int = 2


@dataclass(frozen=True)
class StudyConfig:
    """One study: the shared settings, the stages to run, and each stage's own knobs."""

    model: str = EMBEDDED_MODEL
    method: str = "rome"
    dataset: str = "geofacts"
    limit: int | None = None
    shard_size: int = 10
    ppl_corpus: str = DEFAULT_PPL_CORPUS
    threshold: float = COLLAPSE_THRESHOLD
    seed: int = 0
    device: str | None = None
    batch: int = DEFAULT_BATCH
    hparams_file: str | None = None  # the editor's hyperparameters YAML of one's own, for every stage that edits
    stages: tuple[str, ...] = STAGES
    run_id: str | None = None  # a step's run id is <run_id>-<step> (default: its stage's digest; HardCF: its own)
    sequential: SequentialPart = field(default_factory=SequentialPart)
    hardedit: HardEditPart = field(default_factory=HardEditPart)
    downstream: DownstreamPart = field(default_factory=DownstreamPart)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams_file", checked_hparams_file(self.hparams_file))
        unknown = [stage for stage in self.stages if stage not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)} — the stages are {', '.join(STAGES)}")
        if not self.stages:
            raise ValueError(f"stages is empty — name at least one of {', '.join(STAGES)}")

    def step_run_id(self, step: str) -> str | None:
        """The run id of ``step`` (``<run_id>-<step>``), or None when the stage derives its own."""
        return None if self.run_id is None else f"{self.run_id}-{step}"

    def preflight(self) -> None:
        """The preflight of each chosen step whose config is built from the study alone (the sweep,
        sequential editing, the HardEdit generation, downstream): a mistake is refused before any step."""
        for step in chosen_steps(self):
            if step.name in PREFLIGHT_STEPS:
                step.build(self, {}).preflight()


@dataclass(frozen=True)
class StudyStep:
    """One step of the study: its name, the stage the user selects it by, the step whose failure
    skips it, its config from the study and earlier results, and why it has nothing to do (or None)."""

    name: str
    stage: str
    build: Callable[[StudyConfig, Results], Any]
    needs: str | None = None
    nothing_to_do: Callable[[Results], str | None] = lambda results: None


def _sweep(study: StudyConfig, results: Results) -> SweepConfig:
    return SweepConfig(
        model=study.model,
        method=study.method,
        dataset=study.dataset,
        limit=study.limit,
        shard_size=study.shard_size,
        ppl_corpus=resolve_ppl_corpus(study.ppl_corpus),
        threshold=study.threshold,
        seed=study.seed,
        device=study.device,
        batch=study.batch,
        hparams_file=study.hparams_file,
        run_id=study.step_run_id("sweep") or "",
    )


def _sweep_run(results: Results) -> str | None:
    sweep = results.get("sweep")
    return sweep.run_id if sweep is not None else None


def _hardcf(study: StudyConfig, results: Results) -> HardCFConfig:
    run = _sweep_run(results)
    return HardCFConfig(
        threshold=study.threshold, method=study.method, models=(study.model,), runs=(run,) if run else ()
    )


def _sequential(study: StudyConfig, results: Results) -> SequentialConfig:
    return SequentialConfig(
        model=study.model,
        method=study.method,
        hard_source="hardcf",
        dataset=study.dataset,
        n_edits=study.sequential.n_edits,
        trials=study.sequential.trials,
        seed=study.seed,
        ppl_corpus=resolve_ppl_corpus(study.ppl_corpus),
        threshold=study.threshold,
        device=study.device,
        hparams_file=study.hparams_file,
        run_id=study.step_run_id("sequential"),
    )


def _generation(study: StudyConfig, results: Results) -> GenerationConfig:
    part = study.hardedit
    return GenerationConfig(
        backend=part.backend,
        n_calls=part.calls,
        max_new_tokens=part.max_new_tokens,
        **generator_fields(part.backend, part.model),
        base_url=part.base_url,
        seed=study.seed,
        run_id=study.step_run_id("hardedit-generate"),
    )


def _filter(study: StudyConfig, results: Results) -> FilterConfig:
    return FilterConfig(
        reference_models=(study.model,),
        method=study.method,
        candidate_runs=(results["hardedit-generate"].run_id,),
        limit=study.hardedit.limit,
        ppl_corpus=resolve_ppl_corpus(study.ppl_corpus),
        threshold=study.threshold,
        shard_size=study.shard_size,
        seed=study.seed,
        device=study.device,
        hparams_file=study.hparams_file,
        run_id=study.step_run_id("hardedit-filter"),
    )


def _no_candidates(results: Results) -> str | None:
    generated = results.get("hardedit-generate")
    return "the generator produced no valid candidate" if generated is not None and not generated.unique_valid else None


def _downstream(study: StudyConfig, results: Results) -> DownstreamConfig:
    part = study.downstream
    return DownstreamConfig(
        model=study.model,
        edits=part.edits,
        tasks=part.tasks,
        limit=part.limit,
        method=study.method,
        k=part.k,
        source_run=_sweep_run(results),
        ppl_corpus=resolve_ppl_corpus(study.ppl_corpus),
        seed=study.seed,
        device=study.device,
        hparams_file=study.hparams_file,
        run_id=study.step_run_id("downstream"),
    )


def _analysis(study: StudyConfig, results: Results) -> AnalysisConfig:
    return AnalysisConfig(threshold=study.threshold)


STUDY_STEPS: tuple[StudyStep, ...] = (
    StudyStep("sweep", "sweep", _sweep),
    StudyStep("hardcf", "hardcf", _hardcf, needs="sweep"),
    StudyStep("sequential", "sequential", _sequential, needs="sweep"),
    StudyStep("hardedit-generate", "hardedit", _generation),
    StudyStep("hardedit-filter", "hardedit", _filter, needs="hardedit-generate", nothing_to_do=_no_candidates),
    StudyStep("downstream", "downstream", _downstream, needs="sweep"),
    StudyStep("analysis", "analysis", _analysis),
)


PREFLIGHT_STEPS = ("sweep", "sequential", "hardedit-generate", "downstream")  # built with no earlier result


def chosen_steps(study: StudyConfig) -> list[StudyStep]:
    """The study's steps, in order, of the stages it runs."""
    return [step for step in STUDY_STEPS if step.stage in study.stages]


@dataclass(frozen=True)
class StudyResult(StageResult):
    """One line per step (state and headline) and each completed step's own result."""

    warehouse: str
    steps: tuple[dict[str, str], ...]
    results: dict[str, StageResult]

    @property
    def failed(self) -> list[str]:
        return [line["step"] for line in self.steps if line["state"] not in ("completed", "skipped")]

    def headline(self) -> str:
        done = sum(line["state"] == "completed" for line in self.steps)
        failed = self.failed
        return f"{done} of {len(self.steps)} steps completed" + (f"; failed: {', '.join(failed)}" if failed else "")
