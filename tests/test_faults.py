"""Fault injection: a tiny-gpt2 sweep (3 cases, one per shard) through the project's fixed list of
faults. For each, the run either stops with a clear one-line error or recovers fully, and in the end
nothing is lost and nothing duplicated: every swept table equals the uninterrupted run's
(docs/operations.md, "Reliability guarantees", states the same list).

1. SIGKILL after the run's row is first written, inside a shard (its ``cases``/``edit_metrics``/``ppl``
   parts written, its ``edits`` mark not), between two shards, and before the run's final row;
2. a truncated part;
3. a stale claim (a worker that died holding a shard);
4. a full disk (a write that raises ``OSError`` ENOSPC);
5. a read-only warehouse folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.run import run_sweep
from editcollapse.warehouse import Warehouse, connect
from editcollapse.warehouse.backends import LocalBackend
from tests.sweep_cases import COMPARED, table_rows, write_files

pytestmark = pytest.mark.slow  # a minute in all: every fault ends in a sweep compared with an uninterrupted one

N_CASES = 3


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread, as in the killed child processes (OMP_NUM_THREADS=1): equal floats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    return write_files(tmp_path_factory.mktemp("inputs"), N_CASES)


def config(inputs: tuple[Path, Path]) -> SweepConfig:
    cases_file, corpus = inputs
    return SweepConfig(model="tiny-gpt2", method="rome", dataset=str(cases_file), shard_size=1, ppl_corpus=str(corpus))


@pytest.fixture(scope="module")
def reference(inputs, one_thread, tmp_path_factory) -> Path:
    """The uninterrupted run's warehouse (copied, never changed, by the tests)."""
    root = tmp_path_factory.mktemp("reference") / "wh"
    run_sweep(config(inputs), Warehouse(root))
    return root


def assert_recovered(root: Path, reference: Path, *, attempts: int) -> None:
    """The tables equal the uninterrupted run's; the run is completed, sound, with nothing held."""
    store = Warehouse(root)
    for table in COMPARED:
        assert table_rows(store, table) == table_rows(Warehouse(reference), table), table
    run = connect(store).execute("SELECT status, attempts, n_cases, n_errors FROM runs").fetchall()
    assert run == [("completed", attempts, N_CASES, 0)]
    assert store.claims() == []
    reports = store.check()
    assert not [problem for report in reports for problem in report.bad + report.incomplete]


def copy_of(reference: Path, tmp_path: Path) -> Path:
    root = tmp_path / "wh"
    shutil.copytree(reference, root)
    return root


def sweep_command(inputs: tuple[Path, Path], root: Path) -> list[str]:
    cases_file, corpus = inputs
    command = ["sweep", "--model", "tiny-gpt2", "--dataset", str(cases_file), "--ppl-corpus", str(corpus)]
    return [*command, "--shard-size", "1", "-w", str(root), "--no-prefect"]


def error_line(output: str) -> str:
    """The CLI's one error line (anything else it printed is progress, not the error)."""
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    return line


# --- 1. SIGKILL -------------------------------------------------------------------------------------

KILLED_SWEEP = """
import os, signal, sys
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.run import run_sweep
from editcollapse.warehouse import Warehouse

cases_file, corpus, root, table, shard, nth, when = sys.argv[1:8]
seen = 0
write_part = Warehouse.write_part


def killing_write_part(self, name, rows, **keys):
    global seen
    hit = name == table and str(keys["shard"]) == shard
    seen += hit
    if hit and seen == int(nth) and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    written = write_part(self, name, rows, **keys)
    if hit and seen == int(nth) and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return written


Warehouse.write_part = killing_write_part
spec = SweepConfig(model="tiny-gpt2", method="rome", dataset=cases_file, shard_size=1, ppl_corpus=corpus)
run_sweep(spec, Warehouse(root))
sys.exit(3)  # the kill point was never reached
"""

KILL_POINTS = {
    "after the run's first row": ("runs", "run", 1, "after"),
    "inside a shard, before its completion mark": ("ppl", "1", 1, "after"),
    "between two shards": ("edits", "1", 1, "after"),
    "before the run's final row": ("runs", "run", 3, "before"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_rerun_recovers_fully(point, inputs, reference, tmp_path) -> None:
    root = tmp_path / "wh"
    arguments = [str(value) for value in (*inputs, root, *KILL_POINTS[point])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_SWEEP, *arguments], env=env, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    assert connect(Warehouse(root)).execute("SELECT status FROM runs").fetchall() == [("running",)]
    run_sweep(config(inputs), Warehouse(root))
    assert_recovered(root, reference, attempts=2)


# --- 2. a truncated part ------------------------------------------------------------------------------


def test_truncated_part_is_quarantined_and_its_shard_recomputed(inputs, reference, tmp_path) -> None:
    root = copy_of(reference, tmp_path)
    store = Warehouse(root)
    (part,) = [p for p in store.parts("ppl") if p.name == "part-00001.parquet"]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    run_sweep(config(inputs), store)
    assert_recovered(root, reference, attempts=2)
    assert [p.name for p in (root / "_quarantine").rglob("*.parquet")] == ["part-00001.parquet"]


# --- 3. a stale claim ---------------------------------------------------------------------------------


def test_stale_claim_of_a_dead_worker_is_taken_over(inputs, reference, tmp_path) -> None:
    root = copy_of(reference, tmp_path)
    store = Warehouse(root)
    spec = config(inputs)
    for table in COMPARED:  # the shard the dead worker was computing is not in the warehouse
        store.backend.path(f"{table}/model=tiny-gpt2/method=rome/run={spec.run_id}/part-00001.parquet").unlink()
    claim = Path(store.claim_path(spec.model, spec.method, spec.run_id, 1))
    claim.parent.mkdir(parents=True, exist_ok=True)
    claim.write_text(f"another-host 4242 {time.time() - 7200:.3f} dead\n")
    os.utime(claim, (time.time() - 7200, time.time() - 7200))  # its last heartbeat: 2 hours ago
    run_sweep(spec, store)
    assert_recovered(root, reference, attempts=2)


# --- 4. a full disk -----------------------------------------------------------------------------------


def test_full_disk_is_one_line_and_the_same_command_then_recovers(inputs, reference, tmp_path, monkeypatch) -> None:
    root = tmp_path / "wh"
    write = LocalBackend.write

    def full_disk(self, key: str, data: bytes) -> None:
        if key.startswith("ppl/") and key.endswith("part-00001.parquet"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path(key)))
        write(self, key, data)

    monkeypatch.setattr(LocalBackend, "write", full_disk)
    failed = CliRunner().invoke(app, sweep_command(inputs, root), env={"COLUMNS": "400"})
    assert failed.exit_code == 1, failed.output
    assert "No space left on device" in error_line(failed.output) and "part-00001.parquet" in error_line(failed.output)
    store = Warehouse(root)
    assert connect(store).execute("SELECT status FROM runs").fetchall() == [("failed",)]
    monkeypatch.setattr(LocalBackend, "write", write)  # space freed
    again = CliRunner().invoke(app, sweep_command(inputs, root), env={"COLUMNS": "400"})
    assert again.exit_code == 0, again.output
    assert_recovered(root, reference, attempts=2)


# --- 5. a read-only folder ----------------------------------------------------------------------------


def _writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


def _make_read_only(folder: Path) -> list[list[str]]:
    """Make ``folder`` read-only (chmod, or chattr +i where the tests run as root); return the
    command that undoes it, or skip where neither works."""
    folder.chmod(0o555)
    if not _writable(folder):
        return [["chmod", "755", str(folder)]]
    folder.chmod(0o755)
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode == 0 and not _writable(folder):
        return [["chattr", "-i", str(folder)]]
    pytest.skip("cannot make a folder read-only here (root without chattr)")


def test_read_only_folder_is_one_line_and_nothing_is_written(inputs, reference, tmp_path) -> None:
    root = tmp_path / "wh"
    root.mkdir()
    undo = _make_read_only(root)
    try:
        failed = CliRunner().invoke(app, sweep_command(inputs, root), env={"COLUMNS": "400"})
    finally:
        for command in undo:
            subprocess.run(command, check=True)
    assert failed.exit_code == 1, failed.output
    assert str(root) in error_line(failed.output)
    assert list(root.iterdir()) == []
    again = CliRunner().invoke(app, sweep_command(inputs, root), env={"COLUMNS": "400"})
    assert again.exit_code == 0, again.output
    assert_recovered(root, reference, attempts=1)
