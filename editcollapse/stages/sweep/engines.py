"""The sweep engine interface and the choice between its two engines.

An engine turns a shard's cases into their :class:`~editcollapse.stages.sweep.outcome.CaseOutcome`\\ s,
in order; the shard's bookkeeping (:mod:`~editcollapse.stages.sweep.shard`) does not care which engine
computed them. The one-at-a-time engine (:mod:`~editcollapse.stages.sweep.single`) is the reference
and serves every method; the batched engine (:mod:`~editcollapse.stages.sweep.batched`) gives the same
rows up to float rounding, several times cheaper, for methods whose registry entry names a batched
class. Each engine lives in its own module (they share only :mod:`~editcollapse.stages.sweep.outcome`),
so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from editcollapse.core.case import EditCase
from editcollapse.editors.api import method_spec
from editcollapse.stages.sweep.batched import BatchedEngine
from editcollapse.stages.sweep.outcome import CaseOutcome
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.resources import SweepResources
from editcollapse.stages.sweep.single import SingleEngine


class SweepEngine(Protocol):
    """Computes the outcomes of a shard's cases, one per case, in the cases' order."""

    def outcomes(self, cases: Sequence[EditCase]) -> Iterator[CaseOutcome]: ...


def engine_for(spec: SweepConfig, resources: SweepResources) -> SweepEngine:
    """The batched engine when ``spec.batch`` > 1 and ``spec.method``'s registry entry names a batched
    class (ROME, r-ROME), else the one-at-a-time engine. The batched engine computes its edits with that
    class, not with ``resources.editor``: an editor swapped into the resources runs only with ``batch=1``."""
    batched_class = method_spec(spec.method).batched_class() if spec.batch > 1 else None
    if batched_class is None:
        return SingleEngine(spec, resources)
    return BatchedEngine.for_resources(spec, resources, batched_class)
