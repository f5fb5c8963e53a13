"""Every stage that edits refuses a resume whose identity changed (the hyperparameters as loaded,
the perplexity corpus' content …) before it writes anything, and resumes an unchanged run, each
attempt recorded — as the single-edit sweep does (``tests/test_sweep_provenance.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from editcollapse.core.errors import RunRefused
from editcollapse.editors import api
from editcollapse.warehouse import Warehouse, connect
from editcollapse.warehouse.runs import read_attempts
from tests.sweep_cases import write_files


def snapshot(root: Path) -> dict[Path, int]:
    """Every file under ``root`` with its modification time: what a refused resume must leave as it was."""
    return {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def packaged_hparams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str = "rome") -> tuple[Path, dict]:
    """A copy of the packaged hyperparameters that the editors load instead (so a test can change them)."""
    file = tmp_path / f"{method}-packaged.yaml"
    settings = yaml.safe_load(api.hparams_path(method, "tiny-gpt2").read_text())
    file.write_text(yaml.safe_dump(settings))
    monkeypatch.setattr(api, "hparams_path", lambda method_, model_name: file)
    return file, settings


def run_rows(root: Path) -> list[tuple]:
    return connect(Warehouse(root)).execute("SELECT run_id, stage, status, attempts FROM runs ORDER BY 1").fetchall()


@pytest.mark.slow  # a sequential run, a refusal and a resume: ROME on tiny-gpt2 (about 25 s on a shared CPU)
def test_sequential_refuses_changed_hparams_and_resumes_unchanged(tmp_path, monkeypatch) -> None:
    from editcollapse.stages.sequential.config import SequentialConfig
    from editcollapse.stages.sequential.run import run_sequential

    cases, corpus = write_files(tmp_path, 3)
    hard = tmp_path / "hard.json"
    hard.write_text(json.dumps(json.loads(cases.read_text())[:1]))
    hparams, settings = packaged_hparams(tmp_path, monkeypatch)
    root = tmp_path / "wh"
    config = SequentialConfig(
        model="tiny-gpt2", hard_source=str(hard), dataset=str(cases), n_edits=1, trials=1, ppl_corpus=str(corpus)
    )
    first = run_sequential(config, Warehouse(root))
    store = Warehouse(root)
    normal = next(p for p in store.parts("sequential") if "normal" in p.name)
    normal.unlink()  # as a killed run leaves it: one trajectory not finished
    before = snapshot(root)
    hparams.write_text(yaml.safe_dump({**settings, "v_num_grad_steps": settings["v_num_grad_steps"] + 2}))

    with pytest.raises(RunRefused, match=r"hparams_hash: stored .*--run-id") as refused:
        run_sequential(config, store)
    assert first.run_id in str(refused.value)
    assert snapshot(root) == before  # nothing computed, no attempt recorded

    hparams.write_text(yaml.safe_dump(settings))  # the inputs the run was started with
    resumed = run_sequential(config, store)
    assert resumed.run_id == first.run_id and normal.exists()
    assert run_rows(root) == [(first.run_id, "sequential", "completed", 2)]
    attempts = read_attempts(store, "tiny-gpt2", "rome", first.run_id)
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "completed"), (2, "completed")]
    identity = json.loads(connect(store).execute("SELECT identity FROM runs").fetchone()[0])
    assert identity["model_revision"] == "tiny-seed0" and identity["hparams_hash"] and identity["cases_digest"]


@pytest.mark.slow  # the filter (its single-edit sweep), a refusal and a resume (about 20 s on a shared CPU)
def test_hardedit_filter_refuses_changed_hparams_and_resumes_unchanged(tmp_path, monkeypatch) -> None:
    from editcollapse.stages.hardedit.config import FilterConfig
    from editcollapse.stages.hardedit.runs import run_filter
    from tests.test_hardedit_filter import store_candidates

    _, corpus = write_files(tmp_path, 1)
    hparams, settings = packaged_hparams(tmp_path, monkeypatch)
    root = tmp_path / "wh"
    store = Warehouse(root)
    store_candidates(store)
    config = FilterConfig(reference_models=("tiny-gpt2",), limit=1, ppl_corpus=str(corpus), threshold=0.0)
    first = run_filter(config, store)
    before = snapshot(root)
    hparams.write_text(yaml.safe_dump({**settings, "v_num_grad_steps": settings["v_num_grad_steps"] + 2}))

    with pytest.raises(RunRefused, match=r"hparams_hash@tiny-gpt2: stored .*--run-id"):
        run_filter(config, store)
    assert snapshot(root) == before

    hparams.write_text(yaml.safe_dump(settings))
    assert run_filter(config, store).kept == first.kept
    rows = [row for row in run_rows(root) if row[1] == "hardedit_filter"]
    assert rows == [(first.run_id, "hardedit_filter", "completed", 2)]


@pytest.mark.slow  # lm-eval builds its task twice (about 10 s on a shared CPU)
def test_downstream_refuses_a_changed_corpus_and_resumes_unchanged(tmp_path) -> None:
    from editcollapse.stages.downstream.config import DownstreamConfig
    from editcollapse.stages.downstream.pipeline import run_downstream
    from editcollapse.stages.downstream.suites import lastword_task, write_suite
    from tests.sweep_cases import SENTENCES

    _, corpus = write_files(tmp_path, 1)
    write_suite([lastword_task(SENTENCES, name="ec_identity_lastword", n=2)], tmp_path / "tasks")
    root = tmp_path / "wh"
    config = DownstreamConfig(
        model="tiny-gpt2",
        edits="none",
        tasks=("ec_identity_lastword",),
        limit=2,
        include_path=str(tmp_path / "tasks"),
        ppl_corpus=str(corpus),
        bootstrap_iters=0,
    )
    first = run_downstream(config, Warehouse(root))
    (part,) = Warehouse(root).parts("downstream")
    part.unlink()  # the baseline's part lost: a resume computes it again
    before = snapshot(root)
    texts = json.loads(corpus.read_text())
    corpus.write_text(json.dumps(texts[:-1]))  # same path, other content

    with pytest.raises(RunRefused, match=r"ppl_corpus_digest: stored .*--run-id"):
        run_downstream(config, Warehouse(root))
    assert snapshot(root) == before

    corpus.write_text(json.dumps(texts))
    resumed = run_downstream(config, Warehouse(root))
    assert part.exists() and [r["value"] for r in resumed.rows] == [r["value"] for r in first.rows]
    assert run_rows(root) == [(first.run_id, "downstream", "completed", 2)]


def test_a_filter_identity_names_each_model_and_follows_its_inputs(tmp_path, monkeypatch) -> None:
    from editcollapse.stages.identity import models_identity

    _, corpus = write_files(tmp_path, 1)
    hparams, settings = packaged_hparams(tmp_path, monkeypatch)
    texts = json.loads(corpus.read_text())

    def identity(ppl_texts=tuple(t["Text"] for t in texts)) -> dict:
        return models_identity(
            "rome", ["tiny-gpt2", "tiny-llama"], hparams_file=None, seed=0, cases="c", ppl_texts=ppl_texts
        )

    first = identity()
    assert first["model_revision@tiny-gpt2"] == first["model_revision@tiny-llama"] == "tiny-seed0"
    assert first["cases_digest"] == "c" and "hparams_hash" not in first and first == identity()
    hparams.write_text(yaml.safe_dump({**settings, "v_num_grad_steps": settings["v_num_grad_steps"] + 2}))
    changed = identity()
    assert {key for key in first if first[key] != changed[key]} == {"hparams_hash@tiny-gpt2", "hparams_hash@tiny-llama"}
    assert identity(ppl_texts=["another text"])["ppl_corpus_digest"] != changed["ppl_corpus_digest"]
