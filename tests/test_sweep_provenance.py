"""A sweep run's identity and attempts: a changed hyperparameter file never mixes two computations
in one run, each attempt keeps its provenance, error rows are retried once their cause is fixed,
and an editor that cannot edit yet is refused before the run starts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.core.errors import RunRefused
from editcollapse.editors import api
from editcollapse.editors.covariance import check_ready
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.run import run_sweep
from editcollapse.warehouse import Warehouse, connect
from editcollapse.warehouse.runs import read_attempts
from tests.sweep_cases import COMPARED, table_rows, write_files


def rows(store: Warehouse, query: str) -> list[tuple]:
    return connect(store).execute(query).fetchall()


def test_a_changed_hparams_file_refuses_the_resume_and_a_new_run_id_starts_a_new_run(tmp_path, monkeypatch) -> None:
    cases_file, corpus = write_files(tmp_path, 2)
    hparams = tmp_path / "rome-tiny.yaml"
    settings = yaml.safe_load(api.hparams_path("rome", "tiny-gpt2").read_text())
    hparams.write_text(yaml.safe_dump(settings))
    monkeypatch.setattr(api, "hparams_path", lambda method, model_name: hparams)
    root = tmp_path / "wh"
    command = ["sweep", "--model", "tiny-gpt2", "--dataset", str(cases_file), "--ppl-corpus", str(corpus)]
    command += ["--shard-size", "1", "-w", str(root), "--no-prefect"]
    runner = CliRunner()
    first = runner.invoke(app, command, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    store = Warehouse(root)
    (run_id,) = {row[0] for row in rows(store, "SELECT run_id FROM runs")}
    # the run as a killed worker leaves it (shard 1 not done), then the file changes
    missing = store.backend.path(f"edits/model=tiny-gpt2/method=rome/run={run_id}/part-00001.parquet")
    missing.unlink()
    before = {p: p.stat().st_mtime_ns for p in store.parts("ppl")}
    hparams.write_text(yaml.safe_dump({**settings, "v_num_grad_steps": settings["v_num_grad_steps"] + 2}))

    refused = runner.invoke(app, command, env={"COLUMNS": "400"})
    assert refused.exit_code == 2, refused.output
    (line,) = [line for line in refused.output.splitlines() if line.startswith("error:")]
    assert "hparams_hash: stored" in line and "--run-id" in line and run_id in line
    assert not missing.exists() and {p: p.stat().st_mtime_ns for p in store.parts("ppl")} == before  # nothing computed
    assert rows(store, "SELECT status, attempts FROM runs") == [("completed", 1)]  # the refusal wrote nothing

    new = runner.invoke(app, [*command, "--run-id", "retuned"], env={"COLUMNS": "200"})
    assert new.exit_code == 0, new.output
    per_run = rows(store, "SELECT run_id, count(DISTINCT hparams_hash), count(*) FROM edits GROUP BY 1 ORDER BY 1")
    assert per_run == [("retuned", 1, 3), (run_id, 1, 2)]  # each run one computation (2 cases + 1 invalid)
    hashes = rows(store, "SELECT DISTINCT hparams_hash FROM edits WHERE status = 'ok'")
    assert len(hashes) == 2
    identities = dict(rows(store, "SELECT run_id, identity FROM runs"))
    assert json.loads(identities["retuned"])["hparams_hash"] != json.loads(identities[run_id])["hparams_hash"]


class FlakyEditor:
    """The real ROME editor, except that it fails on one subject while ``broken`` (an out-of-memory
    error, a missing file …: a cause fixed between two attempts)."""

    method = "rome"

    def __init__(self, real) -> None:
        self.real = real
        self.broken = True

    def edit(self, model, tokenizer, arch, cases, hparams):
        if self.broken and cases[0].subject == "Louvre":
            raise RuntimeError("out of memory (simulated)")
        return self.real.edit(model, tokenizer, arch, cases, hparams)


@pytest.mark.slow  # four sweeps: the reference, the failing one, a plain resume, the retry
def test_retry_errors_after_fixing_the_cause_fills_exactly_the_error_rows(tmp_path, monkeypatch) -> None:
    cases_file, corpus = write_files(tmp_path, 2)
    spec = SweepConfig(
        model="tiny-gpt2", method="rome", dataset=str(cases_file), shard_size=1, ppl_corpus=str(corpus), batch=1
    )
    reference = Warehouse(tmp_path / "reference")
    run_sweep(spec, reference)
    flaky = FlakyEditor(api.get_editor("rome"))
    monkeypatch.setattr(api, "get_editor", lambda method: flaky)
    store = Warehouse(tmp_path / "wh")

    failed = run_sweep(spec, store)
    assert (failed.status, failed.n_errors, failed.n_cases) == ("completed_with_errors", 1, 2)
    ((failed_case, error),) = rows(store, "SELECT case_id, error FROM edits WHERE status = 'error'")
    assert error == "RuntimeError: out of memory (simulated)"
    parts = {p: p.stat().st_mtime_ns for p in store.parts("edits")}
    assert run_sweep(spec, store).n_errors == 1  # a plain resume computes nothing
    assert {p: p.stat().st_mtime_ns for p in store.parts("edits")} == parts

    flaky.broken = False
    computed: list[str] = []
    retried = run_sweep(replace(spec, retry_errors=True), store, on_case=computed.append)
    assert computed == [failed_case]  # exactly the error case
    assert (retried.status, retried.n_errors, retried.n_cases) == ("completed", 0, 2)
    for table in COMPARED:
        assert table_rows(store, table) == table_rows(reference, table), table
    untouched = [p for p in store.parts("edits") if p.name == "part-00000.parquet"]
    assert len(untouched) == 1 and untouched[0].stat().st_mtime_ns == parts[untouched[0]]  # the shard without errors
    attempts = read_attempts(store, spec.model, spec.method, spec.run_id)
    assert [a["status"] for a in attempts] == ["completed_with_errors", "completed_with_errors", "completed"]
    assert all(a["finished_at"] >= a["started_at"] and a["hostname"] and a["versions"] for a in attempts)
    assert rows(store, "SELECT status, attempts, n_errors FROM runs") == [("completed", 3, 0)]
    assert rows(store, "SELECT count(*) FROM run_attempts") == [(3,)]


def test_an_untrained_mend_is_refused_before_the_run_starts(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    cases_file, corpus = write_files(tmp_path, 2)
    root = tmp_path / "wh"
    result = CliRunner().invoke(
        app,
        ["sweep", "--model", "tiny-gpt2", "--method", "mend", "--dataset", str(cases_file)]
        + ["--ppl-corpus", str(corpus), "-w", str(root), "--no-prefect"],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "`editcollapse mend train --model tiny-gpt2`" in line
    assert not (root / "runs").exists() and not (root / "edits").exists()  # no run, no error rows


def test_a_key_covariance_that_can_be_neither_read_nor_computed_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    hparams = api.load_hparams("rome", "tiny-gpt2")
    check_ready(hparams)  # no covariance used
    adjusted = hparams.updated({"mom2_adjustment": True})
    check_ready(adjusted)  # the embedded corpus is packaged
    elsewhere = adjusted.updated({"mom2_dataset": "no-such-corpus"})
    with pytest.raises(RunRefused, match="mom2_dataset: embedded"):
        check_ready(elsewhere)
    key_cache = Path(tmp_path / "cache" / "covariance" / "tiny-gpt2_unknown-revision")
    key_cache.mkdir(parents=True)
    (key_cache / "transformer.h.1.mlp.c_proj.no-such-corpus.n40.0123456789ab.safetensors").touch()
    check_ready(elsewhere)  # cached: nothing to compute


def test_a_mend_network_trained_again_changes_the_identity(tmp_path) -> None:
    from editcollapse.editors.mend.readiness import check_ready as mend_ready

    network = tmp_path / "network"
    hparams = api.load_hparams("mend", "tiny-gpt2").updated({"mend_network": str(network)})
    with pytest.raises(RunRefused, match="holds no network.safetensors"):
        mend_ready(hparams)
    network.mkdir()
    (network / "network.safetensors").touch()
    (network / "meta.json").write_text(json.dumps({"iterations": 40}))
    first = mend_ready(hparams)
    assert first == mend_ready(hparams)
    (network / "meta.json").write_text(json.dumps({"iterations": 80}))  # trained again, in place
    assert mend_ready(hparams) != first


class Killed(BaseException):
    """A process killed while it writes (no handler of an ``Exception`` catches it)."""


@pytest.mark.slow  # three sweeps of two cases on tiny-gpt2
def test_a_retry_killed_before_its_mark_leaves_no_ppl_row_beside_an_error_row(tmp_path, monkeypatch) -> None:
    cases_file, corpus = write_files(tmp_path, 2)
    spec = SweepConfig(
        model="tiny-gpt2", method="rome", dataset=str(cases_file), shard_size=2, ppl_corpus=str(corpus), batch=1
    )
    flaky = FlakyEditor(api.get_editor("rome"))
    monkeypatch.setattr(api, "get_editor", lambda method: flaky)
    store = Warehouse(tmp_path / "wh")
    assert run_sweep(spec, store).n_errors == 1
    flaky.broken = False
    write_part = Warehouse.write_part

    def killed_at_the_mark(self, table, rows, **keys):
        if table == "edits" and keys["shard"] == 0:
            raise Killed
        return write_part(self, table, rows, **keys)

    monkeypatch.setattr(Warehouse, "write_part", killed_at_the_mark)
    with pytest.raises(Killed):
        run_sweep(replace(spec, retry_errors=True), store)
    monkeypatch.setattr(Warehouse, "write_part", write_part)
    orphans = "SELECT case_id FROM ppl JOIN edits USING (run_id, case_id) WHERE edits.status = 'error'"
    assert rows(store, orphans) == []  # the retried case's ppl row did not land without its edits row
    assert not store.has_part("edits", spec.model, spec.method, spec.run_id, 0)  # the shard counts as not done

    resumed = run_sweep(spec, store)  # a plain resume computes the unmarked shard again
    assert (resumed.status, resumed.n_errors, resumed.n_cases) == ("completed", 0, 2)
    assert rows(store, "SELECT count(*) FROM ppl") == [(2,)] and rows(store, orphans) == []
    assert rows(store, "SELECT count(*) FROM edits WHERE status = 'ok'") == [(2,)]
