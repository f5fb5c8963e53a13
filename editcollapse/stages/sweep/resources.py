"""What a sweep worker loads once and reuses for every case of its shards, and the cache that keeps it.

Loading a model, sampling its context templates and preparing the perplexity corpus cost far more
than a shard of edits, so a worker keeps them for its next shard of the same (model, method, device,
seed, corpus). The cache is an explicit object owned by whoever runs shards: :func:`run_sweep
<editcollapse.stages.sweep.run.run_sweep>` holds one for its process, and the Prefect tasks hold one
per worker thread — so one model is loaded per worker and never shared by shards running in parallel
threads (a shard edits the model's weights in place while it measures them).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from editcollapse.core.hparams_file import file_digest
from editcollapse.editors.api import Editor
from editcollapse.models.loading import LoadedModel
from editcollapse.stages.sweep.plan import SweepConfig

T = TypeVar("T")


@dataclass
class SweepResources:
    """The model, the editor, its hyperparameters and the perplexity corpus of one sweep spec."""

    loaded: LoadedModel
    editor: Editor
    hparams: Any  # the method's editcollapse.editors.hparams.Hparams
    ppl_texts: list[str]
    editor_state: str | None = None  # fingerprint of what the editor loads beyond its hparams (MEND's network)
    _derived: tuple[Hashable, object] | None = field(default=None, init=False, repr=False)

    def derived(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()``, kept with these resources until asked for under another ``key``: what an engine
        prepares from them once per worker (the batched engine's C⁻¹ and the perplexity corpus' hidden
        states). ``key`` names what the value depends on beyond these resources; one value is kept."""
        if self._derived is None or self._derived[0] != key:
            self._derived = None  # let the old one go before building its replacement
            self._derived = (key, build())
        return cast(T, self._derived[1])


def load_resources(spec: SweepConfig) -> SweepResources:
    """Load the model, the editor, its hyperparameters and the perplexity corpus of ``spec``; an
    editor that cannot edit yet is refused (:func:`~editcollapse.editors.api.check_ready`)."""
    from editcollapse.datasets import load_ppl_corpus
    from editcollapse.editors.api import check_ready, get_editor, hparams_for
    from editcollapse.models import load_model

    loaded = load_model(spec.model, device=spec.device, seed=spec.seed)
    hparams = hparams_for(loaded, spec.method, spec.hparams_file)  # model_revision keys the covariance cache
    editor_state = check_ready(spec.method, hparams)
    return SweepResources(
        loaded=loaded,
        editor=get_editor(spec.method),
        hparams=hparams,
        ppl_texts=list(load_ppl_corpus(spec.ppl_corpus).texts),
        editor_state=editor_state,
    )


def resources_key(spec: SweepConfig) -> tuple[Any, ...]:
    """What :func:`load_resources` depends on: two specs with one key share their resources (a
    hyperparameters file or a perplexity corpus file by its path and content: an edited file is
    read again)."""
    file, corpus = spec.hparams_file, Path(spec.ppl_corpus)
    content = file_digest(corpus) if corpus.is_file() else None
    return (spec.model, spec.method, spec.device, spec.seed, spec.ppl_corpus, content, file, file and file_digest(file))


class ResourceCache:
    """The :class:`SweepResources` of the last spec asked for, reused while the next spec has the
    same :func:`resources_key` and replaced (the old set released first) when it has another — so a
    worker holds one model at a time. Not shared between threads: give each thread its own cache."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._resources: SweepResources | None = None

    def get(self, spec: SweepConfig) -> SweepResources:
        """``spec``'s resources: the held ones when their key matches, else freshly loaded."""
        key = resources_key(spec)
        if self._resources is None or self._key != key:
            self._key, self._resources = None, None
            self._resources = load_resources(spec)
            self._key = key
        return self._resources
