"""The single-edit sweep engine with the real ROME editor on tiny models: every case exactly once,
errors as rows, NaN perplexity counted as collapsed, resume after SIGKILL, HardCF, the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.core.case import EditCase
from editcollapse.core.collapse import is_collapsed
from editcollapse.core.delta import Delta, ParamDelta
from editcollapse.datasets import load_cases
from editcollapse.stages.hardcf.config import HardCFConfig
from editcollapse.stages.hardcf.select import run_selection
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.resources import ResourceCache
from editcollapse.stages.sweep.run import run_sweep
from editcollapse.stages.sweep.shard import run_shard
from editcollapse.stages.sweep.summary import SweepResult, log_ppl_histogram, run_summary
from editcollapse.warehouse import Warehouse, connect
from tests.sweep_cases import COMPARED, SENTENCES, table_rows, tiny_cases, write_files


def spec_for(corpus: Path, **fields) -> SweepConfig:
    values = {
        "model": "tiny-gpt2",
        "method": "rome",
        "dataset": "test",
        "shard_size": 2,
        "ppl_corpus": str(corpus),
        **fields,
    }
    return SweepConfig(**values)


def rows(store: Warehouse, query: str) -> list[tuple]:
    return connect(store).execute(query).fetchall()


def test_config_defaults_and_the_run_id_of_a_resolved_corpus(monkeypatch) -> None:
    from editcollapse.stages.sweep import plan

    default = SweepConfig()
    assert (default.model, default.method, default.dataset) == ("smollm2-135m", "rome", "geofacts")
    monkeypatch.setattr(plan, "resolve_ppl_corpus", lambda name: plan.FALLBACK_PPL_CORPUS)  # ME-PPL-50 offline
    resolved = default.resolved()
    # the derived id names the corpus used: `editcollapse sweep` offline resumes the run it always did
    assert resolved.ppl_corpus == "embedded-50" and resolved.run_id == "sweep-72a64203539a"
    assert resolved.run_id == SweepConfig(ppl_corpus="embedded-50").run_id != default.run_id
    assert SweepConfig(run_id="nightly").resolved().run_id == "nightly"  # a given id is kept
    with pytest.raises(ValueError, match="shard_size"):
        SweepConfig(shard_size=0)


def test_result_headline_and_json_leave_the_bulky_values_out() -> None:
    result = SweepResult(
        run_id="r",
        model="m",
        method="rome",
        status="completed",
        n_cases=3,
        n_errors=1,
        n_invalid=0,
        n_measured=2,
        n_collapsed=1,
        n_nonfinite=1,
        threshold=1000.0,
        ppl_median=12.345,
        ppl_p90=12.345,
        ppl_max=12.345,
        baseline_ppl_mean=10.0,
        most_damaging=({"case_id": "a", "ppl_mean": math.nan},),
        ppl_means=(12.345, math.nan),
    )
    assert result.headline() == "3 cases, 1 collapsed, 1 errors; median ppl 12.35"
    assert replace(result, ppl_median=None).headline().endswith("median ppl —")
    summary = result.to_dict()
    assert "ppl_means" not in summary and summary["most_damaging"] == [{"case_id": "a", "ppl_mean": "nan"}]
    assert json.loads(json.dumps(summary))["status"] == "completed"


def test_sweep_writes_every_case_exactly_once_and_rerun_computes_nothing(tmp_path) -> None:
    cases_file, corpus = write_files(tmp_path, 5)
    store = Warehouse(tmp_path / "wh")
    spec = spec_for(corpus, dataset=str(cases_file))
    progress: list[tuple[int, int]] = []
    summary = run_sweep(spec, store, on_progress=lambda done, total: progress.append((done, total)))
    assert (summary.n_cases, summary.n_errors, summary.n_invalid) == (5, 0, 1)
    # the start, each case, each shard's end (shards of 2, 2, 1)
    assert [done for done, _ in progress] == [0, 1, 2, 2, 3, 4, 4, 5, 5] and {t for _, t in progress} == {5}
    for table in ("cases", "edits", "ppl"):
        counted = rows(store, f"SELECT count(*), count(DISTINCT case_id) FROM {table} WHERE shard IS NOT NULL")
        assert counted == [(5, 5)], table
    assert rows(store, "SELECT count(DISTINCT case_id) FROM edit_metrics WHERE phase = 'post'") == [(5,)]
    assert rows(store, "SELECT shard, count(*) FROM edits WHERE shard IS NOT NULL GROUP BY 1 ORDER BY 1") == [
        (0, 2),
        (1, 2),
        (2, 1),
    ]
    invalid = rows(store, "SELECT case_id, error FROM edits WHERE status = 'invalid'")
    assert len(invalid) == 1 and "record 5" in invalid[0][1] and "subject" in invalid[0][1]
    # the editor's diagnostics are columns; the partition columns come from the path
    diag = rows(
        store,
        "SELECT min(abs(denominator)), min(right_norm), bool_and(NOT bos), "
        "min(subject_first_token), any_value(model), any_value(method) FROM edits WHERE status = 'ok'",
    )
    assert diag[0][0] > 0 and diag[0][1] > 0 and diag[0][2] is True and diag[0][3] == 0
    assert diag[0][4:] == ("tiny-gpt2", "rome")
    run = rows(store, "SELECT status, n_cases, n_errors, attempts, baseline_ppl_mean, parameters FROM runs")
    assert run[0][:4] == ("completed", 5, 0, 1) and math.isfinite(run[0][4])
    assert json.loads(run[0][5])["shard_size"] == 2
    parts = {p: p.stat().st_mtime_ns for p in store.parts("edits")}
    progress.clear()
    again = run_sweep(spec, store, on_progress=lambda done, total: progress.append((done, total)))
    # same parameters → same run id → nothing to compute: the stored cases count as done
    assert again.n_cases == 5 and {p: p.stat().st_mtime_ns for p in store.parts("edits")} == parts
    assert progress == [(5, 5)]
    assert rows(store, "SELECT attempts FROM runs") == [(2,)]


def test_failing_case_is_an_error_row_and_the_shard_goes_on(tmp_path) -> None:
    _, corpus = write_files(tmp_path, 1)
    store = Warehouse(tmp_path / "wh")
    # no subject slot in the prompt: ROME cannot find the subject's tokens
    broken = EditCase(
        case_id="test:broken",
        dataset="test",
        prompt="The capital is",
        subject="Atlantis",
        target_new=" Rome",
        target_true=" Paris",
    )
    cases = [tiny_cases(1)[0], broken, tiny_cases(2)[1]]
    summary = run_sweep(spec_for(corpus, shard_size=3), store, cases=cases)
    assert (summary.n_cases, summary.n_errors, summary.n_measured) == (3, 1, 2)
    status = dict(rows(store, "SELECT case_id, status FROM edits"))
    assert status == {"test:0": "ok", "test:broken": "error", "test:1": "ok"}
    error_type, error = rows(store, "SELECT error_type, error FROM edits WHERE status = 'error'")[0]
    assert error_type == "ValueError" and error.startswith("ValueError: ")
    assert rows(store, "SELECT count(*) FROM ppl WHERE case_id = 'test:broken'") == [(0,)]


class NaNEditor:
    """An editor whose edit of one subject writes NaN into a weight (a model that cannot be scored)."""

    method = "rome"

    def edit(self, model, tokenizer, arch, cases, hparams) -> Delta:
        name = "transformer.h.1.mlp.c_proj.weight"
        change = torch.zeros_like(dict(model.named_parameters())[name])
        if cases[0].subject == "Louvre":
            change[0, 0] = math.nan
        return Delta(method="rome", params={name: ParamDelta(dense=change)}, case_ids=(cases[0].case_id,))


def test_nan_perplexity_is_stored_and_counted_as_collapsed(tmp_path) -> None:
    _, corpus = write_files(tmp_path, 1)
    store = Warehouse(tmp_path / "wh")
    spec = spec_for(corpus, shard_size=2, batch=1)  # a swapped-in editor runs on the one-at-a-time engine
    cache = ResourceCache()
    resources = cache.get(spec)
    resources.editor = NaNEditor()
    before = {k: v.clone() for k, v in resources.loaded.model.state_dict().items()}
    result = run_shard(spec, 0, tiny_cases(2), store, cache=cache)
    assert result.n_collapsed == 1 and result.n_errors == 0
    assert all(torch.equal(before[k], v) for k, v in resources.loaded.model.state_dict().items())  # restored
    stored = dict(rows(store, "SELECT case_id, ppl_mean FROM ppl"))
    assert math.isnan(stored["test:1"]) and math.isfinite(stored["test:0"])
    norms = dict(rows(store, "SELECT case_id, delta_spectral FROM edits"))
    assert math.isnan(norms["test:1"]) and norms["test:0"] == 0.0  # a NaN ΔW has no SVD: kept as NaN
    assert rows(store, "SELECT case_id, collapsed, n_nonfinite FROM ppl ORDER BY 1") == [
        ("test:0", False, 0),
        ("test:1", True, len(SENTENCES)),
    ]
    assert is_collapsed(math.inf, 1000.0) and is_collapsed(math.nan, 1000.0) and not is_collapsed(999.0, 1000.0)
    summary = run_summary(store, spec.model, spec.method, spec.run_id, status="running", baseline_ppl_mean=None)
    assert summary.n_collapsed == 1 and summary.n_nonfinite == 1
    assert summary.most_damaging[0]["case_id"] == "test:1"  # NaN sorts as the most damaging
    assert "| NaN/inf | not finite (collapsed) | 1 |" in log_ppl_histogram(summary.ppl_means, 1000.0)
    # HardCF keeps it, exporting the non-finite value as a string JSON can hold
    store.write_part(
        "runs",
        [{"run_id": spec.run_id, "stage": "single_edit_sweep"}],
        model=spec.model,
        method=spec.method,
        run_id=spec.run_id,
        shard="run",
    )
    selected = run_selection(HardCFConfig(threshold=1000.0, output=str(tmp_path / "hardcf.json")), store)
    assert [r["case_id"] for r in selected.records] == ["test:1"]
    assert json.loads((tmp_path / "hardcf.json").read_text())[0]["rome_tiny-gpt2_ppl"] == "nan"


KILL_SCRIPT = """
import sys
from pathlib import Path
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.run import run_sweep
from editcollapse.warehouse import Warehouse
cases_file, corpus, root = sys.argv[1:4]
spec = SweepConfig(model="tiny-gpt2", method="rome", dataset=cases_file, shard_size=1, ppl_corpus=corpus)
run_sweep(spec, Warehouse(root))
"""


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path) -> None:
    n = 8
    cases_file, corpus = write_files(tmp_path, n)
    command = [sys.executable, "-c", KILL_SCRIPT, str(cases_file), str(corpus)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run([*command, str(whole)], check=True, env=env, timeout=600)

    killed = tmp_path / "killed"
    marks = killed / "edits"
    process = subprocess.Popen([*command, str(killed)], env=env)
    try:
        deadline = time.monotonic() + 300
        while len([p for p in marks.rglob("part-0*.parquet")]) < 2:
            assert process.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    done_before = len(list(marks.rglob("part-0*.parquet")))
    assert 2 <= done_before < n
    store = Warehouse(killed)
    # a killed run: its runs row still says running
    assert rows(store, "SELECT status FROM runs") == [("running",)]
    subprocess.run([*command, str(killed)], check=True, env=env, timeout=600)
    for table in COMPARED:
        assert table_rows(store, table) == table_rows(Warehouse(whole), table), table
    assert rows(store, "SELECT status, attempts, n_cases FROM runs") == [("completed", 2, n)]


def test_hardcf_selects_cases_collapsed_on_any_model_with_per_model_ppl(tmp_path) -> None:
    cases_file, corpus = write_files(tmp_path, 3)
    store = Warehouse(tmp_path / "wh")
    for model in ("tiny-gpt2", "tiny-llama"):
        run_sweep(spec_for(corpus, model=model, dataset=str(cases_file), shard_size=3), store)
    ppl = rows(store, "SELECT model, case_id, ppl_mean FROM ppl ORDER BY ppl_mean DESC")
    threshold = (ppl[0][2] + ppl[1][2]) / 2  # exactly one (model, case) above it
    selected = run_selection(HardCFConfig(threshold=threshold, output=str(tmp_path / "out.json")), store)
    hard_model, hard_case, _ = ppl[0]
    assert [r["case_id"] for r in selected.records] == [hard_case]
    record = json.loads((tmp_path / "out.json").read_text())[0]
    assert set(record) == {
        "case_id",
        "prompt",
        "target_new",
        "subject",
        "ground_truth",
        "rome_tiny-gpt2_ppl",
        "rome_tiny-llama_ppl",
    }
    assert "{}" not in record["prompt"] and record["subject"] in record["prompt"]
    reloaded = load_cases(str(tmp_path / "out.json"), dataset="hardcf")  # the paper's form loads back
    assert not reloaded.errors and reloaded.cases[0].extra.keys() == {"rome_tiny-gpt2_ppl", "rome_tiny-llama_ppl"}
    other = ({"tiny-gpt2", "tiny-llama"} - {hard_model}).pop()
    stored = rows(store, "SELECT source_model, collapsed FROM hardcf ORDER BY 1")
    assert stored == sorted([(hard_model, True), (other, False)])
    assert run_selection(HardCFConfig(threshold=threshold), store).run_id == selected.run_id  # same id, replaced
    assert rows(store, "SELECT count(*) FROM hardcf") == [(2,)]
    assert selected.per_model == {
        "tiny-gpt2": {"swept": 3, "collapsed": int(hard_model == "tiny-gpt2")},
        "tiny-llama": {"swept": 3, "collapsed": int(hard_model == "tiny-llama")},
    }


def test_sweep_and_sql_commands(tmp_path) -> None:
    cases_file, corpus = write_files(tmp_path, 2)
    root = str(tmp_path / "wh")
    runner = CliRunner()
    swept = runner.invoke(
        app,
        [
            "sweep",
            "--model",
            "tiny-llama",
            "--dataset",
            str(cases_file),
            "--ppl-corpus",
            str(corpus),
            "-w",
            root,
            "--no-prefect",
        ],
        env={"COLUMNS": "200"},
    )
    assert swept.exit_code == 0, swept.output
    assert "2 cases, 0 errors, 1 invalid" in swept.output and "most damaging edits" in swept.output
    query = runner.invoke(app, ["sql", "-w", root, "-f", "csv", "SELECT model, count(*) AS n FROM ppl GROUP BY model"])
    assert query.exit_code == 0 and query.stdout.splitlines() == ["model,n", "tiny-llama,2"]
    assert (Path(root) / "catalog.duckdb").is_file()
    selected = runner.invoke(
        app, ["hardcf", "-w", root, "--threshold", "0", "--no-prefect", "-o", str(tmp_path / "hard.json")]
    )
    assert selected.exit_code == 0, selected.output
    assert json.loads(selected.stdout)["n_hard_cases"] == 2
    assert {r["subject"] for r in json.loads((tmp_path / "hard.json").read_text())} == {"Eiffel", "Louvre"}


def test_task_runner_needs_the_prefect_flow() -> None:
    result = CliRunner().invoke(app, ["sweep", "--no-prefect", "--task-runner", "dask:2"])
    assert result.exit_code == 2 and "--task-runner needs the Prefect flow" in result.output


@pytest.mark.slow  # two tiny sweeps: about 30 s on a busy 2-core machine
def test_a_sweep_that_fails_while_being_prepared_is_marked_failed_and_taken_over(tmp_path, monkeypatch) -> None:
    """A failure after the ``runs`` row is written but before any shard (here: the unedited model's
    perplexity) leaves the run ``failed``, not ``running``; the same command then takes it over."""
    from editcollapse.stages.sweep import run as sweep_run

    _, corpus = write_files(tmp_path, 1)
    store = Warehouse(tmp_path / "wh")
    spec = spec_for(corpus, shard_size=1)

    def broken_baseline(spec, resources):
        raise RuntimeError("the baseline broke")

    with monkeypatch.context() as patched:
        patched.setattr(sweep_run, "_baseline", broken_baseline)
        with pytest.raises(RuntimeError, match="the baseline broke"):
            run_sweep(spec, store, cases=tiny_cases(1))
    assert rows(store, "SELECT status, attempts FROM runs") == [("failed", 1)]
    run_sweep(spec, store, cases=tiny_cases(1))
    assert rows(store, "SELECT status, attempts FROM runs") == [("completed", 2)]
