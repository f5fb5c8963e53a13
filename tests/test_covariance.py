"""Key statistics: the right second moment, independent of batching, cached on disk and reloaded fast."""

from __future__ import annotations

import time

import pytest
import torch

from editcollapse.editors.covariance import cache_key, cache_path, layer_covariance, resolve_dtype, second_moment
from editcollapse.models import load_model

TEXTS = [
    f"Sentence number {index} talks about {topic}."
    for index, topic in enumerate(
        ["rivers", "mountains", "a cat", "the sea", "old books", "music", "trains", "cities"] * 3
    )
]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-llama", device="cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))


def _args(tiny, **overrides):
    arguments = dict(
        model_id="tiny-llama",
        revision=tiny.revision,
        texts=TEXTS,
        corpus_id="test-sentences",
        n_samples=len(TEXTS),
        progress=False,
    )
    arguments.update(overrides)
    return arguments


def test_second_moment_is_mean_outer_product_of_all_tokens(tiny):
    module_name = tiny.arch.name("rewrite_module_tmp", 2)
    keys = []
    handle = tiny.model.get_submodule(module_name).register_forward_hook(
        lambda _m, args, _o: keys.append(args[0][0].double())
    )
    try:
        with torch.no_grad():
            for text in TEXTS:  # one text at a time: no padding at all
                tiny.model(**tiny.tokenizer(text, return_tensors="pt"))
    finally:
        handle.remove()
    stacked = torch.cat(keys)
    expected = stacked.T @ stacked / stacked.shape[0]
    small_batches, count = second_moment(
        tiny.model, tiny.tokenizer, module_name, TEXTS, batch_tokens=64, progress=False
    )
    one_batch, count_one = second_moment(
        tiny.model, tiny.tokenizer, module_name, TEXTS, batch_tokens=100_000, progress=False
    )
    assert count == count_one == stacked.shape[0]
    assert torch.allclose(small_batches / count, expected, rtol=1e-5, atol=1e-9)
    assert torch.allclose(one_batch / count, expected, rtol=1e-5, atol=1e-9)
    covariance = layer_covariance(tiny.model, tiny.tokenizer, module_name, **_args(tiny))
    assert covariance.dtype == torch.float32
    assert torch.allclose(covariance.double(), expected, rtol=1e-5, atol=1e-8)


def test_cache_hit_is_fast_and_identical(tiny):
    module_name = tiny.arch.name("rewrite_module_tmp", 1)
    first = layer_covariance(tiny.model, tiny.tokenizer, module_name, **_args(tiny))
    path = cache_path(
        cache_key("tiny-llama", tiny.revision, module_name, "test-sentences", len(TEXTS), 256, torch.float32)
    )
    assert path.is_file()
    start = time.perf_counter()
    second = layer_covariance(tiny.model, tiny.tokenizer, module_name, **_args(tiny, texts=None))
    assert time.perf_counter() - start < 1.0
    assert torch.equal(first, second)  # loaded (texts=None would otherwise look up the corpus by name)
    fewer = layer_covariance(tiny.model, tiny.tokenizer, module_name, **_args(tiny, n_samples=8))
    assert not torch.equal(first, fewer)
    assert len(list(path.parent.glob("*.safetensors"))) == 2


def test_cache_key_separates_revision_layer_and_dtype(tiny):
    base = cache_key("m", "r1", "model.layers.1.mlp.down_proj", "c", 10, 256, torch.float32)
    variants = [
        cache_key("m", "r2", "model.layers.1.mlp.down_proj", "c", 10, 256, torch.float32),
        cache_key("m", "r1", "model.layers.2.mlp.down_proj", "c", 10, 256, torch.float32),
        cache_key("m", "r1", "model.layers.1.mlp.down_proj", "c", 10, 256, torch.float64),
    ]
    assert len({cache_path(key) for key in [base, *variants]}) == 4


def test_bad_inputs_are_named(tiny, tmp_path):
    module_name = tiny.arch.name("rewrite_module_tmp", 1)
    with pytest.raises(ValueError, match="fewer than mom2_n_samples=100"):
        layer_covariance(tiny.model, tiny.tokenizer, module_name, **_args(tiny, n_samples=100))
    with pytest.raises(ValueError, match="mom2_dtype 'float8'"):
        resolve_dtype("float8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="empty.txt: no non-empty lines"):
        layer_covariance(
            tiny.model, tiny.tokenizer, module_name, **_args(tiny, texts=None, corpus_id=str(empty), n_samples=1)
        )
