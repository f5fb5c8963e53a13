"""The Python API (editcollapse.api): the example of docs/python-api.md runs as written, and each
source of hyperparameters reaches the editor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from editcollapse import api as ec
from editcollapse.editors.api import hparams_path
from editcollapse.editors.hparams import HparamsError
from tests.sweep_cases import tiny_cases

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", page.read_text(), flags=re.MULTILINE | re.DOTALL)


@pytest.mark.slow  # an edit, four measurements and a sweep of two cases on a tiny model
def test_the_example_of_the_python_api_page_runs_on_a_tiny_model(tmp_path, monkeypatch, capsys) -> None:
    (example,) = python_blocks(PAGE)
    monkeypatch.setenv("MODEL", "tiny-gpt2")
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(example, str(PAGE), "exec"), names)

    lm, delta, result = names["lm"], names["delta"], names["result"]
    assert delta.method == "rome" and len(delta.case_ids) == 1 and delta.params
    assert {"efficacy_success", "paraphrase_success", "neighborhood_success"} <= set(names["after"])
    assert names["after"]["efficacy_magnitude"] != names["before"]["efficacy_magnitude"]  # measured edited
    fresh = ec.load_model("tiny-gpt2")
    for name, weight in lm.model.state_dict().items():  # restored bit for bit
        assert torch.equal(weight, fresh.model.state_dict()[name]), name
    assert (result.n_cases, result.n_errors, result.status) == (2, 0, "completed")
    stored = ec.query(tmp_path / "warehouse", "SELECT count(*) AS n FROM edits WHERE status = 'ok'")
    assert stored["n"].to_list() == [2]
    printed = capsys.readouterr().out
    assert "efficacy" in printed and "ME-PPL" in printed and "case_id" in printed


def test_each_source_of_hyperparameters_reaches_the_editor(tmp_path) -> None:
    lm = ec.load_model("tiny-gpt2", device="cpu")
    packaged = ec.resolve_hparams(lm, "rome")
    assert packaged.model_revision == lm.revision and packaged.v_num_grad_steps == 8
    changed = ec.resolve_hparams(lm, "rome", {"v_num_grad_steps": 3})
    assert changed.v_num_grad_steps == 3 and changed.model_name == "tiny-gpt2" and changed.hash() != packaged.hash()
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(hparams_path("rome", "tiny-gpt2").read_text()), "v_lr": 0.1}))
    assert ec.resolve_hparams(lm, "rome", path).v_lr == 0.1
    assert ec.resolve_hparams(lm, "rome", changed) is changed
    with pytest.raises(HparamsError, match="unknown rome key 'v_steps'"):
        ec.resolve_hparams(lm, "rome", {"v_steps": 3})

    delta = ec.edit(lm, tiny_cases(1), "rome", changed)
    assert delta.hparams_hash == changed.hash() and delta.diagnostics["v_steps"] <= 3
