"""The screen: ROME's key side (k·u, k*, u, W k) from forward passes alone, equal to a real edit's; the
risk bound holds; the stage stores one row per case, resumes after SIGKILL, and feeds the sweep."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.core.case import EditCase
from editcollapse.core.tokens import pad_id_of
from editcollapse.editors.api import hparams_for
from editcollapse.editors.rome.editor import compute_rome_update
from editcollapse.editors.rome.screen import ScreenedCase, screen_cases
from editcollapse.editors.rome.site import ROMESite
from editcollapse.models import load_model
from editcollapse.models.hooks import module_io_at
from editcollapse.models.tiny import TINY_NAMES
from editcollapse.stages.screen.config import ScreenConfig
from editcollapse.stages.screen.run import run_screen
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.run import run_sweep
from editcollapse.warehouse import Warehouse, connect
from tests.sweep_cases import tiny_cases, write_files

RTOL = 1e-5  # batch shapes change float32 rounding; observed differences are ~1e-7


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def tiny(request):
    return load_model(request.param, device="cpu")


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=RTOL, abs_tol=1e-6)


@pytest.mark.parametrize("method", ["rome", "r-rome"])
def test_screen_equals_what_a_real_edit_computes_and_bounds_its_size(tiny, method) -> None:
    hparams = hparams_for(tiny, "rome")
    consistent = method == "r-rome"
    site = ROMESite.build(tiny.model, tiny.tokenizer, tiny.arch, hparams, consistent_keys=consistent)
    cases = tiny_cases(3)
    screened = screen_cases(site, cases)
    for case, screen in zip(cases, screened, strict=True):
        assert isinstance(screen, ScreenedCase)
        update = compute_rome_update(tiny.model, tiny.tokenizer, tiny.arch, case, hparams, consistent_keys=consistent)
        assert torch.allclose(screen.u, update.u, rtol=RTOL, atol=1e-6)
        assert torch.allclose(screen.k_star, update.k_star, rtol=RTOL, atol=1e-6)
        assert torch.allclose(screen.init, update.target.init, rtol=1e-4, atol=1e-5)
        values, diagnostics = screen.values(), update.diagnostics(tiny.tokenizer)
        for name in ("denominator", "k_bare_norm", "k_star_norm", "cos_k_bare_k_star", "v_init_norm"):
            assert _close(values[name], diagnostics[name]), name
        for name in ("subject_first_token", "subject_last_token", "lookup_token", "bos", "layer", "n_templates"):
            assert values[name] == diagnostics[name], name
        assert values["consistent_keys"] is consistent
        assert (values["output_gap_norm"] == 0.0) is not consistent
        # the bound: ‖ΔW‖_F = ‖r‖ (‖u‖ = 1) never exceeds the risk (up to float rounding)
        assert diagnostics["right_norm"] <= values["risk"] * (1 + 1e-4)
        assert values["risk"] == pytest.approx(
            (values["output_gap_norm"] + hparams.clamp_norm_factor * values["v_init_norm"]) / abs(values["denominator"])
        )


def test_a_case_whose_subject_is_not_in_its_prompt_is_reported_and_the_others_go_on(tiny) -> None:
    site = ROMESite.build(tiny.model, tiny.tokenizer, tiny.arch, hparams_for(tiny, "rome"))
    good = tiny_cases(2)
    bad = EditCase(
        case_id="bad", dataset="test", prompt="{} is in", subject="", target_new=" Rome", target_true=" Paris"
    )
    results = screen_cases(site, [good[0], bad, good[1]])
    assert isinstance(results[1], ValueError) and "empty subject" in str(results[1])
    assert all(isinstance(results[index], ScreenedCase) for index in (0, 2))
    alone = screen_cases(site, [good[1]])[0]
    assert _close(results[2].values()["denominator"], alone.values()["denominator"])


def _bad_case() -> EditCase:
    return EditCase(case_id="test:bad", dataset="test", prompt="{} is in", subject="", target_new=" Rome")


def test_the_stage_stores_one_row_per_case_and_a_rerun_computes_nothing(tmp_path) -> None:
    cases = [*tiny_cases(4), _bad_case()]
    config = ScreenConfig(model="tiny-gpt2", dataset="test", shard_size=2, batch=3)
    store = Warehouse(tmp_path / "wh")
    progress: list[tuple[int, int]] = []
    result = run_screen(config, store, cases=cases, on_progress=lambda done, total: progress.append((done, total)))
    assert (result.n_cases, result.n_ok, result.n_invalid, result.n_errors) == (5, 4, 1, 0)
    assert progress[0] == (0, 5) and progress[-1] == (5, 5)
    rows = {row["case_id"]: row for row in store.read("screen").to_pylist()}
    assert sorted(rows) == sorted(case.case_id for case in cases)
    assert rows["test:bad"]["status"] == "invalid" and "empty subject" in rows["test:bad"]["error"]
    loaded = load_model("tiny-gpt2", device="cpu")
    site = ROMESite.build(loaded.model, loaded.tokenizer, loaded.arch, hparams_for(loaded, "rome"))
    for case, screened in zip(cases[:4], screen_cases(site, cases[:4]), strict=True):
        assert _close(rows[case.case_id]["risk"], screened.values()["risk"])
    assert result.riskiest[0]["risk"] == max(row["risk"] for row in rows.values() if row["status"] == "ok")
    stamps = {part: part.stat().st_mtime_ns for part in store.parts("screen")}
    again = run_screen(config, store, cases=cases)
    assert {part: part.stat().st_mtime_ns for part in store.parts("screen")} == stamps
    assert again.n_cases == 5
    run = connect(store).execute("SELECT stage, status, attempts, n_cases FROM runs").fetchall()
    assert run == [("screen", "completed", 2, 5)]


def test_screen_refuses_methods_without_a_rank_one_denominator() -> None:
    for method in ("memit", "ft", "mend"):
        with pytest.raises(ValueError, match=f"screen does not apply to method '{method}'.* — screen with"):
            ScreenConfig(method=method)


def test_cli_screens_a_file_and_refuses_memit_in_one_line(tmp_path) -> None:
    cases_file, _ = write_files(tmp_path, 3)
    root = str(tmp_path / "wh")
    command = ["screen", "--model", "tiny-gpt2", "--dataset", str(cases_file), "-w", root, "--no-prefect"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert (printed["n_cases"], printed["n_ok"], printed["n_invalid"]) == (4, 3, 1)  # the loader's rejected record
    assert connect(root).execute("SELECT count(*) FROM screen WHERE status = 'invalid'").fetchone() == (1,)
    refused = CliRunner().invoke(app, [*command, "--method", "memit"])
    assert refused.exit_code == 2
    assert refused.output.count("\n") == 1 and refused.output.startswith("error: screen does not apply to method")


KILL_SCRIPT = """
import sys, time
from editcollapse.stages.screen import run as screen_run
from editcollapse.stages.screen.config import ScreenConfig
from editcollapse.warehouse import Warehouse
cases_file, root, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
original = screen_run.screen_cases
def paused(site, cases):  # a tiny model screens a case in milliseconds: leave time to kill it mid-run
    time.sleep(pause)
    return original(site, cases)
screen_run.screen_cases = paused
screen_run.run_screen(ScreenConfig(model="tiny-gpt2", dataset=cases_file, shard_size=1, batch=1), Warehouse(root))
"""


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path) -> None:
    n = 8
    cases_file, _ = write_files(tmp_path, n)
    command = [sys.executable, "-c", KILL_SCRIPT, str(cases_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*command, str(whole), "0"], check=True, env=env, timeout=300)
    process = subprocess.Popen([*command, str(killed), "0.5"], env=env)
    try:
        deadline = time.monotonic() + 300
        while len(list((killed / "screen").rglob("part-0*.parquet"))) < 2:
            assert process.poll() is None, "the screen ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert 2 <= len(list((killed / "screen").rglob("part-0*.parquet"))) < n
    assert connect(killed).execute("SELECT status FROM runs").fetchall() == [("running",)]
    subprocess.run([*command, str(killed), "0"], check=True, env=env, timeout=300)
    query = "SELECT case_id, shard, status, error, denominator, k_star_norm, risk FROM screen ORDER BY ALL"
    assert connect(killed).execute(query).fetchall() == connect(whole).execute(query).fetchall()
    assert len(connect(killed).execute(query).fetchall()) == n + 1  # and the loader's rejected record
    assert connect(killed).execute("SELECT status, attempts, n_cases FROM runs").fetchall() == [("completed", 2, n + 1)]


def test_a_sweep_of_the_top_n_screened_cases_sweeps_exactly_those(tmp_path) -> None:
    cases_file, corpus = write_files(tmp_path, 5)
    store = Warehouse(tmp_path / "wh")
    screen = run_screen(ScreenConfig(model="tiny-gpt2", dataset=str(cases_file)), store)
    risks = connect(store).execute("SELECT case_id FROM screen WHERE status = 'ok' ORDER BY risk DESC").fetchall()
    expected = sorted(case_id for (case_id,) in risks[:2])
    spec = SweepConfig(
        model="tiny-gpt2",
        dataset=str(cases_file),
        ppl_corpus=str(corpus),
        shard_size=1,
        screen_run=screen.run_id,
        top=2,
        select="lookup_token >= 0",
    )
    assert spec.run_id != replace(spec, run_id="", screen_run=None, top=None, select=None).run_id
    result = run_sweep(spec, store)
    swept = connect(store).execute(f"SELECT case_id, status FROM edits WHERE run_id = '{spec.run_id}' ORDER BY 1")
    assert swept.fetchall() == [(case_id, "ok") for case_id in expected]  # no invalid row: it was never screened
    assert result.n_cases == 2
    with pytest.raises(ValueError, match=r"^the --select filter 'no_such_column > 1' fails on the screen table: .* — "):
        run_sweep(replace(spec, run_id="other", select="no_such_column > 1"), store)
    with pytest.raises(ValueError, match=r"^screen run 'missing' has no rows in .* — run `editcollapse screen` first"):
        run_sweep(replace(spec, run_id="other", screen_run="missing"), store)
    with pytest.raises(ValueError, match="limit and screen_run both choose the cases — use top"):
        replace(spec, limit=3)
    with pytest.raises(ValueError, match=r"top and select choose among a screen run's cases — name it"):
        SweepConfig(top=3)


@pytest.mark.parametrize("name", TINY_NAMES)
def test_template_keys_cut_and_sharing_template_prefixes_equal_a_padded_pass_over_whole_texts(name) -> None:
    tiny = load_model(name, device="cpu")
    site = ROMESite.build(tiny.model, tiny.tokenizer, tiny.arch, hparams_for(tiny, "rome"))
    located = [site.locate(case) for case in tiny_cases(3)]
    keys, outputs = site.template_keys(located)
    texts = [text for case in located for text in case]
    assert any(text.position < len(text.ids) - 1 for text in texts)  # some texts go on after the lookup
    prefixes = [site.prefix_ids(template) for template in range(len(site.templates))] * len(located)
    shared = [bool(prefix) and text.ids[: len(prefix)] == prefix for text, prefix in zip(texts, prefixes)]
    assert sum(shared) == len(texts) - len(located)  # every text behind a context template reuses its tokens
    whole_keys, whole_outputs = module_io_at(
        tiny.model, site.rewrite, [t.ids for t in texts], [t.position for t in texts], pad_id_of(tiny.tokenizer)
    )
    assert torch.allclose(keys.flatten(0, 1), whole_keys, rtol=RTOL, atol=1e-6)
    assert torch.allclose(outputs.flatten(0, 1), whole_outputs, rtol=RTOL, atol=1e-6)


def test_flow_takes_a_deployment_mapping_and_publishes_the_riskiest_cases(tmp_path, monkeypatch) -> None:
    from prefect.client.orchestration import get_client

    from editcollapse.orchestration.flows.screen import screen_cases_flow
    from editcollapse.orchestration.flows.sweep import artifact_key

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy 2-core machine
    cases_file, _ = write_files(tmp_path, 3)
    config = {"model": "tiny-gpt2", "method": "r-rome", "dataset": str(cases_file), "shard_size": 2}
    result = screen_cases_flow(config=config, warehouse=str(tmp_path / "wh"), progress_bar=False)
    assert (result.n_cases, result.n_ok, result.n_invalid) == (4, 3, 1)
    with get_client(sync_client=True) as client:
        keys = {artifact.key: artifact for artifact in client.read_artifacts()}
    assert artifact_key("screen-progress", result.run_id) in keys
    riskiest = keys[artifact_key("screen-riskiest", result.run_id)]
    assert result.riskiest[0]["case_id"] in str(riskiest.data)
