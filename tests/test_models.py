"""Model loading, architecture maps and the tiny random-weight models."""

from __future__ import annotations

import pytest
import torch

from editcollapse.models import ModelNotAvailable, load_model
from editcollapse.models.tiny import TINY_NAMES


@pytest.mark.parametrize("name", TINY_NAMES)
def test_arch_map_resolves_every_module(name: str) -> None:
    loaded = load_model(name, device="cpu")
    for module_name in loaded.arch.all_module_names():
        loaded.model.get_submodule(module_name)
    weight = loaded.arch.rewrite_weight(loaded.model, 0)
    hidden = loaded.model.config.hidden_size
    # ROME's rewritten matrix maps the MLP's inner dimension back to the residual stream.
    expected_out_dim = 1 if loaded.arch.weights_transposed else 0
    assert weight.shape[expected_out_dim] == hidden


@pytest.mark.parametrize("name", TINY_NAMES)
def test_tiny_models_are_seeded(name: str) -> None:
    first = load_model(name, device="cpu", seed=3).model.state_dict()
    second = load_model(name, device="cpu", seed=3).model.state_dict()
    other = load_model(name, device="cpu", seed=4).model.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_explicit_dtype() -> None:
    loaded = load_model("tiny-llama", device="cpu", dtype=torch.float64)
    assert next(loaded.model.parameters()).dtype == torch.float64


def test_unknown_name_says_what_is_accepted() -> None:
    with pytest.raises(ModelNotAvailable, match="unknown model 'no-such-model'.*smollm2-135m"):
        load_model("no-such-model")


def test_folder_without_weights(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotAvailable, match="has no model weights"):
        load_model(str(tmp_path))


def test_folder_without_config(tmp_path) -> None:
    with pytest.raises(ModelNotAvailable, match="has no config.json"):
        load_model(str(tmp_path))


def test_local_folder_round_trip(tmp_path) -> None:
    tiny = load_model("tiny-gpt2", device="cpu", seed=1)
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), device="cpu")
    assert loaded.arch.family == "gpt2"
    assert loaded.revision.startswith("local-")
    for key, value in tiny.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])


def test_hub_id_offline_explains_local_folder() -> None:
    # conftest sets HF_HUB_OFFLINE=1 and a private empty HF_HOME: the real hub path runs and fails.
    with pytest.raises(ModelNotAvailable, match="pass DIR as the model name"):
        load_model("gpt2-xl")
