"""The one progress bar: it counts across threads, never goes back, and drives its progress
artifact only every few percent (each update is an API call)."""

from __future__ import annotations

import threading

from editcollapse.orchestration.progress import ProgressBar, progress_artifact
from editcollapse.stages.mend.run import losses_text


def test_threads_advance_it_to_the_exact_count() -> None:
    published: list[float] = []
    with ProgressBar("cases", 400, enabled=False, artifact=published.append) as bar:
        workers = [threading.Thread(target=lambda: [bar.advance("case") for _ in range(100)]) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert bar.completed == 400
    assert published[-1] == 100.0 and published == sorted(published)
    assert all(later - earlier >= 5.0 for earlier, later in zip(published, published[1:], strict=False))
    assert len(published) <= 20  # at most one update every 5 % of 400 units, not 400


def test_the_artifact_moves_every_few_percent_and_shows_where_a_run_stopped() -> None:
    published: list[float] = []
    with ProgressBar("steps", enabled=False, artifact=published.append, every=10.0) as bar:
        for done in range(0, 38):
            bar.update(done, 50)
        bar.update(30, 50)  # a worker reporting late: the count does not go back
        assert bar.completed == 37
    assert published == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 74.0]  # 74 %: the last word at the end


def test_a_resumed_run_starts_where_it_stopped_and_no_total_publishes_nothing() -> None:
    published: list[float] = []
    with ProgressBar("sweep", 10, completed=4, enabled=False, artifact=published.append) as bar:
        assert published == [40.0]
        bar.update(10)
    assert published == [40.0, 100.0] and bar.total == 10
    silent: list[float] = []
    with ProgressBar("calls", enabled=False, artifact=silent.append) as bar:
        bar.advance()
    assert silent == [] and bar.completed == 1


def test_the_bar_shows_the_count_and_the_extra_text(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # room for every column
    with ProgressBar("MEND tiny-gpt2", 20) as bar:
        bar.update(20, 20, losses_text({"loss/edit": 1.23456, "loss/loc": 0.5}))
    shown = capsys.readouterr().err  # stderr: stdout stays for results (JSON)
    assert "MEND tiny-gpt2" in shown and "20/20" in shown and "edit 1.235 loc 0.5000" in shown


def test_outside_a_prefect_run_there_is_no_artifact() -> None:
    assert progress_artifact("sweep-progress-x", "cases") is None
