"""Hyperparameters of one's own: ``--hparams FILE`` through the stage configs, run ids and identities,
``editcollapse hparams show``, and ROME/MEMIT context templates given in the file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from editcollapse.cli import app, main
from editcollapse.editors.api import get_editor, hparams_for, hparams_path, load_hparams_file
from editcollapse.editors.hparams import HparamsError
from editcollapse.models import load_model
from editcollapse.models.tiny import build_tiny
from editcollapse.stages.downstream.config import DownstreamConfig
from editcollapse.stages.hardedit.config import FilterConfig
from editcollapse.stages.mend.config import MENDTrainConfig
from editcollapse.stages.mend.run import mend_hparams
from editcollapse.stages.sequential.config import SequentialConfig
from editcollapse.stages.study import STUDY_STEPS, StudyConfig
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.warehouse import Warehouse, connect
from tests.sweep_cases import tiny_cases, write_files


def own_file(folder: Path, method: str = "rome", name: str = "mine.yaml", **changes) -> Path:
    """The packaged tiny file of ``method`` with ``changes``, saved as a file of one's own."""
    settings = yaml.safe_load(hparams_path(method, "tiny-gpt2").read_text())
    path = folder / name
    path.write_text(yaml.safe_dump({**settings, **changes}))
    return path


def run_main(monkeypatch, capsys, *arguments: str) -> tuple[int, str, str]:
    """The console entry point in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["editcollapse", *arguments])
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


# --- the stage configs ---------------------------------------------------------------------------


def test_a_config_checks_the_file_and_its_run_id_digests_the_content(tmp_path) -> None:
    with pytest.raises(ValueError, match="nope.yaml") as error:
        SweepConfig(hparams_file=str(tmp_path / "nope.yaml"))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="is not a file"):
        SequentialConfig(hparams_file=str(tmp_path))
    with pytest.raises(ValueError, match="nope.yaml"):
        MENDTrainConfig(hparams_file=str(tmp_path / "nope.yaml"))
    assert "hparams_file" not in SweepConfig().parameters() and "hparams_file" not in SequentialConfig().parameters()

    path = own_file(tmp_path)
    sweep = SweepConfig(hparams_file=str(path))
    assert sweep.hparams_file == str(path.resolve())
    assert sweep.parameters()["hparams_file_digest"] and sweep.run_id != SweepConfig().run_id
    assert SweepConfig(hparams_file=path).run_id == sweep.run_id  # same file, same run
    sequential = SequentialConfig(hparams_file=str(path)).default_run_id()
    assert sequential != SequentialConfig().default_run_id()

    path.write_text(path.read_text() + "# another try\n")  # new content, same numbers: still a new run id
    assert SweepConfig(hparams_file=str(path)).run_id != sweep.run_id
    assert SequentialConfig(hparams_file=str(path)).default_run_id() != sequential


def test_one_file_fits_one_filter_model_and_the_study_hands_it_to_every_editing_stage(tmp_path) -> None:
    path = own_file(tmp_path)
    with pytest.raises(ValueError, match="fits one model"):
        FilterConfig(reference_models=("tiny-gpt2", "tiny-llama"), hparams_file=str(path))
    study = StudyConfig(model="tiny-gpt2", hparams_file=str(path))
    results = {"hardedit-generate": SimpleNamespace(run_id="gen"), "sweep": SimpleNamespace(run_id="s")}
    handed = {step.name: getattr(step.build(study, results), "hparams_file", "no edits") for step in STUDY_STEPS}
    file = str(path.resolve())
    assert handed == {
        "sweep": file,
        "hardcf": "no edits",
        "sequential": file,
        "hardedit-generate": "no edits",
        "hardedit-filter": file,
        "downstream": file,
        "analysis": "no edits",
    }
    assert DownstreamConfig(hparams_file=str(path)).hparams_file == str(path.resolve())


# --- loading -------------------------------------------------------------------------------------


def test_a_file_of_ones_own_is_filled_like_a_packaged_one(tmp_path) -> None:
    loaded = load_model("tiny-gpt2", device="cpu")
    packaged = hparams_for(loaded, "rome")
    own = hparams_for(loaded, "rome", own_file(tmp_path, v_lr=0.25))
    assert (own.v_lr, own.model_name, own.model_revision) == (0.25, "tiny-gpt2", "tiny-seed0")
    assert own.hash() != packaged.hash()
    assert hparams_for(loaded, "rome", own_file(tmp_path)).hash() == packaged.hash()  # same content, same hash
    named = hparams_for(loaded, "rome", own_file(tmp_path, model_name="my-model"))
    assert named.model_name == "my-model"  # a file that names its model keeps it
    mend = mend_hparams(loaded, {"max_iters": 3}, path=str(own_file(tmp_path, "mend", name="mend.yaml", lr=0.5)))
    assert (mend.lr, mend.max_iters, mend.model_revision) == (0.5, 3, "tiny-seed0")  # mend train --hparams


# --- the command line ----------------------------------------------------------------------------


def test_hparams_show_prints_the_packaged_file_and_path_says_where_it_is() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["hparams", "show", "memit", "tiny-llama"])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == hparams_path("memit", "tiny-llama").read_text()
    assert load_hparams_file("memit", hparams_path("memit", "tiny-llama")).keys()
    where = runner.invoke(app, ["hparams", "path", "rome", "smollm2-135m"])
    assert where.stdout.strip() == str(hparams_path("rome", "smollm2-135m"))


def test_unknown_names_and_keys_are_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys) -> None:
    code, out, err = run_main(monkeypatch, capsys, "hparams", "show", "romee", "tiny-gpt2")
    assert code == 2 and not out and err.count("\n") == 1
    assert "unknown editing method 'romee'" in err and "rome, r-rome, memit, alphaedit, ft, ft-l-inf, mend" in err

    code, out, err = run_main(monkeypatch, capsys, "hparams", "show", "rome", "gpt5")
    assert code == 2 and err.count("\n") == 1 and "'gpt5'" in err and "gpt2-xl, llama-2-7b, smollm2-135m" in err

    cases, corpus = write_files(tmp_path, 2)
    bad = own_file(tmp_path, v_lrr=0.5)
    command = ["sweep", "--model", "tiny-gpt2", "--dataset", str(cases), "--ppl-corpus", str(corpus)]
    command += ["-w", str(tmp_path / "wh"), "--no-prefect", "--hparams", str(bad)]
    code, out, err = run_main(monkeypatch, capsys, *command)
    assert code == 2 and err.count("\n") == 1, err
    assert "unknown rome key 'v_lrr' (did you mean 'v_lr'?)" in err and str(bad) in err
    assert not (tmp_path / "wh" / "edits").exists()


# --- a local model folder end to end -------------------------------------------------------------


@pytest.mark.slow  # a sweep of 3 cases and a refused resume
def test_a_local_model_folder_sweeps_with_a_given_file_and_a_changed_file_is_refused_on_resume(tmp_path) -> None:
    folder = tmp_path / "my-model"
    model, tokenizer = build_tiny("tiny-llama", seed=3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cases, corpus = write_files(tmp_path, 3)
    path = own_file(tmp_path, v_num_grad_steps=4)
    root = tmp_path / "wh"
    command = ["sweep", "--model", str(folder), "--hparams", str(path), "--dataset", str(cases)]
    command += ["--ppl-corpus", str(corpus), "--shard-size", "2", "-w", str(root), "--no-prefect"]
    runner = CliRunner()

    done = runner.invoke(app, command, env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    store = Warehouse(root)
    database = connect(store)
    edits = database.execute("SELECT case_id, status, hparams_hash FROM edits ORDER BY case_id").fetchall()
    assert [(case, status) for case, status, _ in edits] == [
        ("hardedit:cases/0", "ok"),
        ("hardedit:cases/1", "ok"),
        ("hardedit:cases/2", "ok"),
        ("invalid:cases.json#3", "invalid"),
    ]
    expected = hparams_for(load_model(str(folder), device="cpu"), "rome", path)
    assert expected.v_num_grad_steps == 4 and expected.model_name == str(folder)
    assert {row[2] for row in edits if row[1] == "ok"} == {expected.hash()}
    ppl = database.execute("SELECT count(*), min(ppl_mean) FROM ppl WHERE case_id LIKE 'hardedit:%'").fetchone()
    assert ppl[0] >= 3 and ppl[1] > 0
    ((run_id, parameters, identity),) = database.execute("SELECT run_id, parameters, identity FROM runs").fetchall()
    assert json.loads(identity)["hparams_hash"] == expected.hash()
    recorded = json.loads(parameters)
    assert recorded["hparams_file"] == str(path.resolve()) and len(recorded["hparams_file_digest"]) == 16
    assert (
        run_id
        == SweepConfig(
            model=str(folder), hparams_file=str(path), dataset=str(cases), ppl_corpus=str(corpus), shard_size=2
        ).run_id
    )

    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "v_num_grad_steps": 5}))
    refused = runner.invoke(app, [*command, "--run-id", run_id], env={"COLUMNS": "400"})
    assert refused.exit_code == 2, refused.output
    (line,) = [line for line in refused.output.splitlines() if line.startswith("error:")]
    assert "hparams_hash: stored" in line and run_id in line
    assert connect(store).execute("SELECT count(*) FROM runs").fetchone() == (1,)  # nothing new was started


# --- context templates ---------------------------------------------------------------------------

GIVEN = ["{}", "The day after. {}", "A note: {}"]


def test_context_templates_must_open_with_the_bare_prompt_and_hold_one_placeholder(tmp_path) -> None:
    for templates, message in (
        (["The day after. {}"], "the first must be '{}'"),
        ([], "the first must be '{}'"),
        (["{}", "No placeholder."], "once, got 'No placeholder.'"),
        (["{}", "{} and {}"], "once, got '{} and {}'"),
    ):
        with pytest.raises(HparamsError, match=message):
            load_hparams_file("rome", own_file(tmp_path, context_templates=templates))
    assert load_hparams_file("memit", own_file(tmp_path, "memit", context_templates=GIVEN)).context_templates == tuple(
        GIVEN
    )


def test_rome_edits_with_the_given_templates_and_samples_them_without(tmp_path) -> None:
    from editcollapse.editors.rome.context_templates import context_templates
    from editcollapse.editors.rome.editor import compute_rome_update

    loaded = load_model("tiny-gpt2", device="cpu")
    (case,) = tiny_cases(1)
    packaged = hparams_for(loaded, "rome")
    given = hparams_for(loaded, "rome", own_file(tmp_path, context_templates=GIVEN))
    update = compute_rome_update(loaded.model, loaded.tokenizer, loaded.arch, case, given)
    assert update.templates == GIVEN and update.keys.shape[0] == len(GIVEN)
    assert update.diagnostics(loaded.tokenizer)["n_templates"] == len(GIVEN) and given.hash() != packaged.hash()

    default = compute_rome_update(loaded.model, loaded.tokenizer, loaded.arch, case, packaged)
    sampled = context_templates(loaded.model, loaded.tokenizer, packaged.context_template_length_params)
    assert default.templates == sampled and len(sampled) == 1 + 5 and default.templates != GIVEN
    assert "context_templates" not in packaged.to_dict()  # the packaged hashes stay as they were


def test_memit_edits_with_the_given_templates(tmp_path, monkeypatch) -> None:
    from editcollapse.editors.memit import editor as memit_editor

    loaded = load_model("tiny-gpt2", device="cpu")
    given = hparams_for(loaded, "memit", own_file(tmp_path, "memit", context_templates=GIVEN, mom2_adjustment=False))
    seen: list[list[str]] = []
    real = memit_editor.optimise_target_vector

    def recording(*args, **kwargs):
        seen.append(list(args[6]))  # the templates argument
        return real(*args, **kwargs)

    monkeypatch.setattr(memit_editor, "optimise_target_vector", recording)
    delta = get_editor("memit").edit(loaded.model, loaded.tokenizer, loaded.arch, tiny_cases(2), given)
    assert seen == [GIVEN, GIVEN] and delta.case_ids == ("test:0", "test:1")
    assert memit_editor.template_groups(given.context_template_length_params, given=GIVEN) == [1, 2]
    assert memit_editor.template_groups([[10, 5]]) == [1, 5]  # sampled: "{}" alone, one group per (length, n_gen)
