"""Progress of long work: a rich bar on the terminal and, inside a Prefect run, a progress artifact.

Every stage reports its progress through a callback (``on_progress(done, total)``, ``on_case``,
``on_iteration``); :class:`ProgressBar` is the one object a flow or a ``--no-prefect`` command
hands it. Prefect is imported only by :func:`progress_artifact`, so a plain run never imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Publish = Callable[[float], None]  # sets an artifact's percentage


class ProgressBar:
    """A rich progress bar (on stderr: stdout stays for results) that may also drive a progress
    artifact, updated only when it moved by ``every`` percent (each update is an API call).

    Thread-safe: workers advance it from their threads. The count never goes back, so workers that
    report out of order (a shard's end after another shard's cases) cannot make it jump."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        completed: int = 0,
        enabled: bool = True,
        artifact: Publish | None = None,
        every: float = 5.0,
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[text]}"),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(label, total=total, completed=completed, text="")
        self._lock = threading.Lock()
        self._completed, self._total = completed, total
        self._artifact, self._every = artifact, every
        self._published = 0.0  # a new artifact starts at 0 %

    @property
    def completed(self) -> int:
        return self._completed

    @property
    def total(self) -> int | None:
        return self._total

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        with self._lock:
            self._publish(force=True)  # a resumed run starts where it stopped
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
        with self._lock:
            self._publish(force=True)  # the last few percent, and where a failed run stopped

    def advance(self, *_: object) -> None:
        """One more unit done (ignores its arguments, so it fits ``on_case(case_id)``)."""
        with self._lock:
            self._set(self._completed + 1, self._total, None)

    def update(self, completed: int, total: int | None = None, text: str | None = None) -> None:
        """``completed`` units done of ``total`` (None: unchanged); ``text`` after the bar (losses …).
        Fits ``on_progress(done, total)``."""
        with self._lock:
            self._set(max(completed, self._completed), self._total if total is None else total, text)

    def _set(self, completed: int, total: int | None, text: str | None) -> None:
        self._completed, self._total = completed, total
        fields = {} if text is None else {"text": text}
        self._progress.update(self._task, completed=completed, total=total, **fields)
        self._publish(force=False)

    def _publish(self, force: bool) -> None:
        if self._artifact is None or not self._total:
            return
        percent = min(100.0, 100.0 * self._completed / self._total)
        moved = percent - self._published
        if moved > 0 and (force or percent == 100.0 or moved >= self._every):
            self._published = percent
            self._artifact(percent)


def progress_artifact(key: str | None, description: str) -> Publish | None:
    """A new Prefect progress artifact (at 0 %) and the function that sets its percentage; None
    outside a flow or task run (a ``.fn`` call: creating one there would start a temporary server)."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    from editcollapse.orchestration.run_context import in_prefect_run

    if not in_prefect_run():
        return None
    artifact_id = create_progress_artifact(0.0, key=key, description=description)
    return lambda percent: update_progress_artifact(artifact_id, percent)
