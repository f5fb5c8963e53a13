"""MEND: the editor network, its training (loss goes down, resume = uninterrupted run, storage and
lookup), the exact and reversible low-rank Delta, the sweep / sequential / CLI / flow integration on
tiny models, and one short SmolLM2 training whose held-out efficacy must rise well above pre-edit."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from editcollapse.core.delta import Delta
from editcollapse.datasets import load_cases
from editcollapse.editors.api import get_editor, hparams_for, methods
from editcollapse.editors.mend import MENDNotTrained
from editcollapse.editors.mend.core import capture_factors, edited_forward, encode_rows, transform_factors
from editcollapse.editors.mend.data import load_mend_data, split_by_subject
from editcollapse.editors.mend.network import MENDNetwork, RunningNorm
from editcollapse.editors.mend.store import load_network, network_dir, resolve_network_dir
from editcollapse.editors.mend.train import train_network
from editcollapse.models import load_model
from editcollapse.stages.mend.run import evaluate_heldout, mend_hparams, train_for_model
from tests.conftest import requires_smollm2
from tests.sweep_cases import tiny_cases, write_files


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test stores networks in its own cache (never the user's)."""
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path_factory.mktemp("cache")))
    torch.set_num_threads(1)


def tiny(name: str = "tiny-llama"):
    return load_model(name, device="cpu")


def short(loaded, **overrides):
    """Tiny-model hparams with a short schedule."""
    return mend_hparams(
        loaded, {"max_iters": 6, "val_interval": 3, "val_steps": 8, "model_save_pt": 2, "batch_size": 4, **overrides}
    )


# --- the network --------------------------------------------------------------------------------------


def test_network_starts_as_identity_on_normalised_factors_and_shares_per_shape() -> None:
    torch.manual_seed(0)
    network = MENDNetwork({"a": (8, 12), "b": (8, 12), "c": (12, 8)}, rank=4)
    assert sorted(network.transforms) == ["12x8", "8x12"] and network.route["b"] == ("8x12", 1)
    x, d = torch.randn(50, 8) * 3 + 1, torch.randn(50, 12) * 1e-3
    network.train()
    network.transform("a", x, d)  # training: statistics updated
    network.eval()
    x_t, d_t = network.transform("b", x, d)
    torch.testing.assert_close(x_t, (x - x.mean(0)) / (x.std(0) + 1e-7), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(d_t, (d - d.mean(0)) / (d.std(0) + 1e-7), atol=1e-4, rtol=1e-4)


def test_running_norm_equals_batch_statistics() -> None:
    data = torch.randn(300, 5, dtype=torch.float64) * torch.tensor([1, 2, 3, 4, 5.0], dtype=torch.float64)
    norm = RunningNorm(5)
    for chunk in data.split([1, 7, 92, 200]):
        norm.update(chunk)
    torch.testing.assert_close(norm.mean, data.mean(0))
    torch.testing.assert_close((norm.m2 / (norm.count - 1)).sqrt(), data.std(0))


# --- data -----------------------------------------------------------------------------------------------


def test_geofacts_split_is_seeded_and_disjoint_by_subject() -> None:
    settings = mend_hparams(tiny())
    data = load_mend_data(settings)
    again = load_mend_data(settings)
    assert data.data_id == again.data_id and [c.case_id for c in data.val] == [c.case_id for c in again.val]
    assert not {c.subject for c in data.train} & {c.subject for c in data.val}
    assert not {c.case_id for c in data.train} & {c.case_id for c in data.val}
    assert 0.1 < len(data.val) / (len(data.train) + len(data.val)) < 0.3
    other = load_mend_data(replace(mend_hparams(tiny()), split_seed=1))
    assert other.data_id != data.data_id and {c.case_id for c in other.val} != {c.case_id for c in data.val}
    cases = load_cases("geofacts").cases
    train, val = split_by_subject(cases, 0.5, 3)
    assert len(train) + len(val) == len(cases)


def test_train_and_val_files_by_path(tmp_path: Path) -> None:
    records = [
        {
            "subject": c.subject,
            "src": f"Where is {c.subject}?",
            "alt": "Rome",
            "answers": ["Paris"],
            "rephrase": f"In which city is {c.subject}?",
            "loc": "nq question: who wrote hamlet",
            "loc_ans": "Shakespeare",
        }
        for c in tiny_cases(12)
    ]
    (tmp_path / "train.json").write_text(json.dumps(records[:8]))
    (tmp_path / "val.json").write_text(json.dumps(records[8:]))
    hparams = replace(
        mend_hparams(tiny()), train_data=str(tmp_path / "train.json"), val_data=str(tmp_path / "val.json")
    )
    data = load_mend_data(hparams)
    assert (len(data.train), len(data.val)) == (8, 4) and data.data_id.startswith("train-")


# --- training -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_on_a_tiny_model_reduces_the_edit_loss() -> None:
    loaded = tiny()
    summary = train_for_model(loaded, mend_hparams(loaded, {"max_iters": 30, "val_interval": 10}))
    first, best = summary["first_validation"], summary["best_validation"]
    assert summary["finished"] and summary["iterations"] == 30
    assert best["loss/edit_val"] < first["loss/edit_val"] - 0.05  # held-out cases
    assert best["edit/acc_val"] > first["edit/acc_val"] + 0.2
    history = json.loads((Path(summary["folder"]) / "history.json").read_text())
    train = [row["loss/total_edit"] for row in history if "loss/total_edit" in row]
    assert sum(train[-10:]) < sum(train[:10])
    folder = Path(summary["folder"])
    for name in ("network.safetensors", "meta.json", "loss_curve.png", "checkpoint.pt"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["model"], meta["model_revision"]) == ("tiny-llama", "tiny-seed0")
    assert meta["data_id"].startswith("geofacts-split0") and meta["hparams_hash"] == folder.name


def test_resumed_training_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    loaded = tiny()
    settings = short(loaded)
    data = load_mend_data(settings)
    whole, _ = train_network(loaded.model, loaded.tokenizer, settings, data, tmp_path / "whole")
    first, state = train_network(loaded.model, loaded.tokenizer, settings, data, tmp_path / "split", stop_after=3)
    assert state.iteration == 3 and (tmp_path / "split" / "checkpoint.pt").is_file()
    resumed, state = train_network(loaded.model, loaded.tokenizer, settings, data, tmp_path / "split")
    assert state.iteration == 6
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-5, atol=1e-7, msg=key)
    assert not torch.equal(first.edit_lrs, torch.full_like(first.edit_lrs, settings.edit_lr))


KILLED_RUN = """
import os, signal, sys, torch
torch.set_num_threads(1)
from editcollapse.editors.mend.data import load_mend_data
from editcollapse.editors.mend.train import train_network
from editcollapse.stages.mend.run import mend_hparams
from editcollapse.models import load_model
loaded = load_model("tiny-llama", device="cpu")
settings = mend_hparams(loaded, {overrides!r})
def kill(iteration, total, info):
    if iteration == 5:
        os.kill(os.getpid(), signal.SIGKILL)
train_network(loaded.model, loaded.tokenizer, settings, load_mend_data(settings), sys.argv[1], on_iteration=kill)
"""


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    overrides = {"max_iters": 6, "val_interval": 3, "val_steps": 8, "model_save_pt": 2, "batch_size": 4}
    script = KILLED_RUN.format(overrides=overrides)
    killed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]["iteration"] == 4
    loaded = tiny()
    settings = short(loaded)
    data = load_mend_data(settings)
    resumed, state = train_network(loaded.model, loaded.tokenizer, settings, data, tmp_path / "run")
    whole, _ = train_network(loaded.model, loaded.tokenizer, settings, data, tmp_path / "whole")
    assert state.iteration == 6
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-5, atol=1e-7, msg=key)


# --- the editor -----------------------------------------------------------------------------------------


@pytest.fixture
def trained_gpt2():
    """tiny-gpt2 (Conv1D weights) with a network trained under the packaged tiny hparams."""
    loaded = tiny("tiny-gpt2")
    train_for_model(loaded, mend_hparams(loaded, {"max_iters": 4, "val_interval": 4}))
    return loaded


def test_without_a_trained_network_the_error_names_the_train_command() -> None:
    loaded = tiny()
    with pytest.raises(MENDNotTrained, match="editcollapse mend train --model tiny-llama"):
        get_editor("mend").edit(loaded.model, loaded.tokenizer, loaded.arch, tiny_cases(1), hparams_for(loaded, "mend"))
    assert "mend" in methods()


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_the_delta_is_exact_low_rank_and_reversible(name: str) -> None:
    loaded = tiny(name)
    hparams = mend_hparams(loaded, {"max_iters": 4, "val_interval": 4})
    train_for_model(loaded, hparams)
    model, case = loaded.model, load_cases("geofacts").cases[3]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    delta = get_editor("mend").edit(model, loaded.tokenizer, loaded.arch, [case], hparams)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # the model is untouched
    assert all(p.grad is None for p in model.parameters())
    assert sorted(delta.params) == sorted(hparams.params_for(loaded.arch.family))
    pair = [(case.filled_prompt, case.target_new)]
    n_tokens = encode_rows(loaded.tokenizer, pair, torch.device("cpu")).input_ids.shape[1]
    assert all(0 < change.rank <= n_tokens for change in delta.params.values())

    # ΔW = −α Σ_t δ̃_t x̃_tᵀ, in the parameter's layout; the edited weights give the edited forward's logits
    folder = resolve_network_dir(hparams)
    network = load_network(folder / "network.safetensors")
    from editcollapse.editors.mend.core import resolve_targets

    targets = resolve_targets(model, hparams.params_for(loaded.arch.family))
    batch = encode_rows(loaded.tokenizer, [(case.filled_prompt, case.target_new)], torch.device("cpu"))
    factors, _ = capture_factors(model, targets, batch, [0])
    with torch.no_grad():
        transformed = transform_factors(network, factors)
        for target in targets:
            ((x, d),) = transformed[target.param]
            expected = -network.edit_lr(target.param) * d.T @ x  # (out, in)
            expected = expected.T if target.transposed else expected
            torch.testing.assert_close(delta.params[target.param].materialize(), expected, rtol=1e-5, atol=1e-7)
        with edited_forward(model, targets, network, transformed, torch.tensor([0])):
            hooked = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        with delta.applied(model):
            applied = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            for n, p in model.named_parameters():
                if n in delta.params:
                    torch.testing.assert_close(p - before[n], delta.params[n].materialize(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(applied, hooked, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(applied, model(input_ids=batch.input_ids).logits, atol=1e-4)  # it is an edit
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # reversed bit for bit
    # two cases at once: the sum of their single edits (MEND's batched edit)
    other = load_cases("geofacts").cases[40]
    both = get_editor("mend").edit(model, loaded.tokenizer, loaded.arch, [case, other], hparams)
    single = get_editor("mend").edit(model, loaded.tokenizer, loaded.arch, [other], hparams)
    for n, change in both.params.items():
        torch.testing.assert_close(
            change.materialize(), (delta.params[n] + single.params[n]).materialize(), rtol=1e-4, atol=1e-6
        )


def test_delta_round_trips_through_safetensors(trained_gpt2, tmp_path: Path) -> None:
    loaded = trained_gpt2
    delta = get_editor("mend").edit(
        loaded.model,
        loaded.tokenizer,
        loaded.arch,
        tiny_cases(1),
        replace(hparams_for(loaded, "mend"), max_iters=4, val_interval=4),
    )
    delta.save(tmp_path / "d.safetensors")
    again = Delta.load(tmp_path / "d.safetensors")
    assert again.method == "mend" and again.diagnostics["network"] == delta.diagnostics["network"]
    for n, change in delta.params.items():
        assert torch.equal(again.params[n].u, change.u) and torch.equal(again.params[n].v, change.v)


@pytest.mark.slow
def test_mend_in_the_single_edit_sweep(tmp_path: Path) -> None:
    """The sweep reads the packaged tiny hparams: the network trained with them is found and used."""
    from editcollapse.stages.sweep.plan import SweepConfig
    from editcollapse.stages.sweep.run import run_sweep
    from editcollapse.warehouse import Warehouse, connect

    loaded = tiny("tiny-gpt2")
    train_for_model(loaded, hparams_for(loaded, "mend"))  # the packaged schedule (40 iterations)
    cases_file, corpus = write_files(tmp_path, 3)
    store = Warehouse(tmp_path / "wh")
    summary = run_sweep(
        SweepConfig(model="tiny-gpt2", method="mend", dataset=str(cases_file), shard_size=2, ppl_corpus=str(corpus)),
        store,
    )
    assert (summary.n_cases, summary.n_errors) == (3, 0)
    got = (
        connect(store)
        .execute("SELECT count(*), bool_and(status = 'ok') FROM edits WHERE status != 'invalid'")
        .fetchall()
    )
    assert got == [(3, True)]


def test_mend_in_sequential_editing(trained_gpt2, tmp_path: Path) -> None:
    from editcollapse.stages.sequential.groups import Member
    from editcollapse.stages.sequential.measure import CorpusEvaluator
    from editcollapse.stages.sequential.run import make_edit
    from editcollapse.stages.sequential.store import StepStore
    from editcollapse.stages.sequential.trajectory import TrajectorySettings, run_trajectory
    from tests.sweep_cases import SENTENCES

    loaded = trained_gpt2
    before = [p.detach().clone() for p in loaded.model.parameters()]
    hparams = mend_hparams(loaded, {"max_iters": 4, "val_interval": 4})
    rows = run_trajectory(
        loaded,
        make_edit("mend", hparams),
        [Member(c, "random") for c in tiny_cases(3)],
        CorpusEvaluator(tuple(SENTENCES)),
        StepStore(str(tmp_path / "t")),
        TrajectorySettings(),
        {"run_id": "r", "group": "normal", "trial": 0, "corpus": "tiny"},
    )
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and all(r["error"] is None for r in rows)
    assert rows[3]["cumulative_fro"] > rows[1]["cumulative_fro"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, loaded.model.parameters(), strict=True))


@pytest.mark.slow
def test_cli_trains_then_lists_and_a_finished_run_is_reused() -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["mend", "train", "--model", "tiny-neox", "--max-iters", "3", "--no-prefect", "--heldout", "2"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["finished"] and summary["iterations"] == 3 and summary["heldout"]["n_cases"] == 2
    again = runner.invoke(app, ["mend", "train", "--model", "tiny-neox", "--max-iters", "3", "--no-prefect"])
    assert (
        again.exit_code == 0
        and json.loads(again.output[again.output.index("{") :])["train_time_s"] == summary["train_time_s"]
    )  # nothing was trained again
    listed = runner.invoke(app, ["mend", "list"])
    assert listed.exit_code == 0 and "tiny-neox" in listed.output


def test_an_invalid_training_config_is_one_line_and_exit_code_2() -> None:
    from typer.testing import CliRunner

    from editcollapse.cli import app
    from editcollapse.stages.mend.config import MENDTrainConfig

    with pytest.raises(ValueError, match="heldout"):
        MENDTrainConfig(heldout=-1)
    result = CliRunner().invoke(app, ["mend", "train", "--model", "tiny-neox", "--max-iters", "0", "--no-prefect"])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "error: max_iters must be at least 1 (got 0); leave it unset for the hparams'"
    ]


@pytest.mark.slow
def test_prefect_flow_trains_with_a_progress_artifact() -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    from editcollapse.orchestration.flows.mend import train_mend

    # The ephemeral API server gets 20 s to start by default: too little on a busy 2-core machine
    # (an environment variable is too late once prefect is imported).
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 180}):
        # a dict, as a deployment or the UI passes it: Prefect validates it into a MENDTrainConfig
        config = {"model": "tiny-gptj", "max_iters": 3, "overrides": {"val_interval": 3}, "device": "cpu"}
        state = train_mend(config=config, progress_bar=False, return_state=True)
        result = state.result()
        with get_client(sync_client=True) as client:
            keys = {artifact.key for artifact in client.read_artifacts()}
            assert client.read_flow_run(state.state_details.flow_run_id).name == "mend tiny-gptj · None"
    assert result.finished and result.loss_curve.is_file()
    assert {"mend-progress-tiny-gptj-default", "mend-summary-tiny-gptj-default"} <= keys
    assert result.folder == network_dir(
        "tiny-gptj", "tiny-seed0", result.data_id, mend_hparams(tiny("tiny-gptj"), {"max_iters": 3, "val_interval": 3})
    )


# --- SmolLM2 --------------------------------------------------------------------------------------------

SMOLLM2_TEST_SCHEDULE = {
    "max_iters": 12,
    "batch_size": 6,
    "val_interval": 100,
    "val_steps": 6,
    "model_save_pt": 100,
    "lr_lr": 1e-3,
}


@requires_smollm2
@pytest.mark.smollm2
@pytest.mark.slow
def test_smollm2_mend_trained_here_lifts_held_out_efficacy(smollm2) -> None:
    """A short schedule (12 iterations of 6 edits) of the packaged SmolLM2 hparams on the embedded
    default's training split, then single edits of 16 held-out cases (subjects never trained on)."""
    hparams = mend_hparams(smollm2, SMOLLM2_TEST_SCHEDULE)
    summary = train_for_model(smollm2, hparams)
    assert summary["finished"]
    data = load_mend_data(hparams)
    cases = list(data.val)
    random.Random(1).shuffle(cases)
    result = evaluate_heldout(smollm2, hparams, cases[:16])
    pre, post = result["pre"]["efficacy_success"], result["post"]["efficacy_success"]
    print(
        json.dumps({k: result[k] for k in ("pre", "post", "seconds_per_edit")}), summary["train_time_s"], "s training"
    )
    assert post >= pre + 0.4 and post >= 0.7, result
    assert math.isfinite(result["post"]["neighborhood_success"])
