"""A local progress bar over MEND training iterations (no Prefect: the CLI's --no-prefect path uses it too)."""

from __future__ import annotations


class ProgressBar:
    """A local rich progress bar over training iterations (with the latest losses)."""

    def __init__(self, label: str, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            disable=not enabled,
        )
        self._task = self._progress.add_task(label, total=None, losses="")

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, iteration: int, total: int, info: dict[str, float]) -> None:
        losses = f"edit {info.get('loss/edit', float('nan')):.3f} loc {info.get('loss/loc', float('nan')):.4f}"
        self._progress.update(self._task, completed=iteration, total=total, losses=losses)
