"""FT, FT-L∞ and MEMIT: bounds, efficacy on tiny models, exact reversibility, MEMIT's closed form."""

from __future__ import annotations

import pytest
import torch

from editcollapse.datasets.case import EditCase
from editcollapse.editors import ft as ft_module
from editcollapse.editors.base import get_editor, load_hparams
from editcollapse.evaluation.scoring import score_targets
from editcollapse.models import load_model

TINY_CASES = [
    EditCase(case_id="tiny:0", dataset="tiny", prompt="{} is located in", subject="Paris",
             target_new="Rome", target_true="France"),
    EditCase(case_id="tiny:1", dataset="tiny", prompt="The capital of {} is", subject="Spain",
             target_new="Oslo", target_true="Madrid"),
]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def assert_bit_identical(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for name, param in model.named_parameters():
        assert torch.equal(param, saved[name]), f"{name} changed"


def target_logprob(loaded, cases: list[EditCase]) -> list[float]:
    scores = score_targets(loaded.model, loaded.tokenizer, [(c.filled_prompt, c.target_new) for c in cases])
    return [score.sum_logprob for score in scores]


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def tiny(request):
    return load_model(request.param, device="cpu")


# --- FT / FT-L∞ ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["ft", "ft-l-inf"])
def test_ft_raises_target_probability_and_leaves_model_untouched(tiny, method):
    saved = snapshot(tiny.model)
    before = target_logprob(tiny, TINY_CASES)
    delta = get_editor(method).edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES,
                                    load_hparams(method, tiny.name))
    assert_bit_identical(tiny.model, saved)
    assert all(param.grad is None for param in tiny.model.parameters())
    assert delta.method == method and delta.case_ids == ("tiny:0", "tiny:1")
    assert set(delta.params) == {f"{tiny.arch.name('rewrite_module_tmp', layer)}.weight" for layer in (1, 2)}
    with delta.applied(tiny.model):
        after = target_logprob(tiny, TINY_CASES)
    assert_bit_identical(tiny.model, saved)
    for pre, post in zip(before, after, strict=True):
        assert post > pre + 0.1, (before, after)


def test_ft_l_inf_keeps_every_weight_within_the_bound(tiny):
    hparams = load_hparams("ft-l-inf", tiny.name)
    radius = hparams["norm_constraint"]
    unconstrained = get_editor("ft").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES,
                                          load_hparams("ft", tiny.name))
    # the bound must bind: unconstrained training moves some weight further than the radius
    assert max(change.dense.abs().max() for change in unconstrained.params.values()) > 2 * radius
    delta = get_editor("ft-l-inf").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, hparams)
    originals = snapshot(tiny.model)
    with delta.applied(tiny.model):
        for name in delta.params:
            moved = (tiny.model.get_parameter(name) - originals[name]).abs()
            # the projection is exact; subtracting and re-adding the delta costs at most a few ulps
            slack = 4 * torch.finfo(torch.float32).eps * originals[name].abs().max()
            assert moved.max() <= radius + slack, name
            assert moved.max() >= 0.5 * radius, f"{name}: FT-L∞ did not move (max {moved.max()})"


def test_ft_exception_mid_edit_leaves_model_unchanged(tiny, monkeypatch):
    saved = snapshot(tiny.model)
    calls = {"n": 0}
    real_loss = ft_module.target_loss

    def failing_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected failure")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(ft_module, "target_loss", failing_loss)
    with pytest.raises(RuntimeError, match="injected failure"):
        get_editor("ft-l-inf").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES,
                                    load_hparams("ft-l-inf", tiny.name))
    assert calls["n"] == 3
    assert_bit_identical(tiny.model, saved)


def test_ft_l_inf_refuses_a_missing_bound(tiny):
    hparams = dict(load_hparams("ft-l-inf", tiny.name), norm_constraint=False)
    with pytest.raises(ValueError, match="norm_constraint"):
        get_editor("ft-l-inf").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, hparams)
