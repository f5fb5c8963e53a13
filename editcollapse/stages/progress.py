"""How a stage reports its progress: ``on_progress(done, total)``, units of work done so far (work
a resumed run finds stored counts as done) of the run's total. The orchestration layer turns the
calls into a progress bar and a Prefect progress artifact; a stage never draws one itself."""

from __future__ import annotations

from collections.abc import Callable

OnProgress = Callable[[int, int], None]


def ignore_progress(done: int, total: int) -> None:
    """The default ``on_progress``: a run nobody watches."""
