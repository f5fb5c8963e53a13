"""Integration: the embedded SmolLM2-135M loads, speaks English, and its cache is self-healing."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from conftest import requires_smollm2

from editcollapse.models.embedded import embedded_cache_dir
from editcollapse.models.tiny import random_model

SENTENCES = [
    "The cat sat on the mat and looked out of the window.",
    "I went to the store to buy some milk and bread.",
    "She opened the door and walked into the room.",
]


def sentence_perplexity(model, tokenizer, text: str) -> float:
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    return math.exp(loss.item())


@requires_smollm2
def test_smollm2_speaks_english(smollm2) -> None:
    assert smollm2.arch.family == "llama" and smollm2.arch.n_layers == 30
    for text in SENTENCES:
        assert 5 < sentence_perplexity(smollm2.model, smollm2.tokenizer, text) < 80


@requires_smollm2
def test_same_architecture_random_weights_is_collapsed(smollm2) -> None:
    broken = random_model(smollm2.model.config, seed=0, dtype=torch.float32)
    for text in SENTENCES:
        assert sentence_perplexity(broken, smollm2.tokenizer, text) > 1000


@requires_smollm2
def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, smollm2, capsys) -> None:
    from editcollapse.models import load_model

    source = embedded_cache_dir()
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path))
    copy = embedded_cache_dir()
    shutil.copytree(source, copy)
    weights = copy / "model.safetensors"
    with weights.open("r+b") as handle:  # overwrite the safetensors header with garbage
        handle.write(b"\xff" * 64)
    capsys.readouterr()
    reloaded = load_model("smollm2-135m", device="cpu")
    assert capsys.readouterr().err == ""  # the conversion draws no third-party bar
    reference = smollm2.model.state_dict()
    for key, value in reloaded.model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    from editcollapse.models.embedded import cache_problem, gguf_fingerprint
    from editcollapse.models.registry import embedded_gguf_path

    assert cache_problem(copy, gguf_fingerprint(embedded_gguf_path())) is None


@pytest.mark.parametrize("damage", ["truncate", "manifest"])
@requires_smollm2
def test_cache_problems_are_detected(tmp_path, damage, smollm2) -> None:
    from editcollapse.models.embedded import cache_problem, gguf_fingerprint
    from editcollapse.models.registry import embedded_gguf_path

    copy = tmp_path / "cache"
    shutil.copytree(embedded_cache_dir(), copy)
    if damage == "truncate":
        with (copy / "model.safetensors").open("r+b") as handle:
            handle.truncate(1000)
    else:
        (copy / "editcollapse-manifest.json").write_text("{not json")
    assert cache_problem(copy, gguf_fingerprint(embedded_gguf_path())) is not None
