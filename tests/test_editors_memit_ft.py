"""FT, FT-L∞ and MEMIT: bounds, efficacy on tiny models, exact reversibility, MEMIT's closed form."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from editcollapse.core.case import EditCase
from editcollapse.editors.api import get_editor, load_hparams
from editcollapse.editors.covariance import layer_covariance
from editcollapse.editors.ft import editor as ft_module
from editcollapse.editors.memit import editor as memit_module
from editcollapse.editors.rome.context_templates import context_templates
from editcollapse.editors.rome.keys import keys_at_templates
from editcollapse.evaluation.scoring import score_targets
from editcollapse.models import load_model

TINY_CASES = [
    EditCase(
        case_id="tiny:0",
        dataset="tiny",
        prompt="{} is located in",
        subject="Paris",
        target_new="Rome",
        target_true="France",
    ),
    EditCase(
        case_id="tiny:1",
        dataset="tiny",
        prompt="The capital of {} is",
        subject="Spain",
        target_new="Oslo",
        target_true="Madrid",
    ),
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
    delta = get_editor(method).edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, load_hparams(method, tiny.name))
    assert_bit_identical(tiny.model, saved)
    assert all(param.grad is None for param in tiny.model.parameters())
    assert delta.method == method and delta.case_ids == ("tiny:0", "tiny:1")
    assert set(delta.params) == {f"{tiny.arch.name('rewrite_module_tmp', layer)}.weight" for layer in (1, 2)}
    with delta.applied(tiny.model):
        after = target_logprob(tiny, TINY_CASES)
    assert_bit_identical(tiny.model, saved)
    for pre, post in zip(before, after, strict=True):
        assert post > pre + 0.1, (before, after)


@pytest.mark.slow
def test_ft_l_inf_keeps_every_weight_within_the_bound(tiny):
    hparams = load_hparams("ft-l-inf", tiny.name)
    radius = hparams.norm_constraint
    unconstrained = get_editor("ft").edit(
        tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, load_hparams("ft", tiny.name)
    )
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


def test_ft_trains_a_bias_and_reports_its_norms():
    """FT on a 1-D parameter (GPT-2's MLP output bias, named directly by ``rewrite_module_tmp``)."""
    gpt2 = load_model("tiny-gpt2", device="cpu")
    hparams = replace(load_hparams("ft", gpt2.name), rewrite_module_tmp="transformer.h.{}.mlp.c_proj.bias")
    saved = snapshot(gpt2.model)
    before = target_logprob(gpt2, TINY_CASES)
    delta = get_editor("ft").edit(gpt2.model, gpt2.tokenizer, gpt2.arch, TINY_CASES, hparams)
    assert_bit_identical(gpt2.model, saved)
    assert set(delta.params) == {f"transformer.h.{layer}.mlp.c_proj.bias" for layer in (1, 2)}
    for name, change in delta.params.items():
        assert change.dense.ndim == 1
        norms = delta.norms()[name]
        assert norms["fro"] == pytest.approx(change.dense.double().norm().item(), rel=1e-12) and norms["fro"] > 0
        assert norms["spectral"] == pytest.approx(norms["fro"], rel=1e-12)
    with delta.applied(gpt2.model):
        after = target_logprob(gpt2, TINY_CASES)
    assert_bit_identical(gpt2.model, saved)
    assert all(post > pre for pre, post in zip(before, after, strict=True)), (before, after)


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
        get_editor("ft-l-inf").edit(
            tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, load_hparams("ft-l-inf", tiny.name)
        )
    assert calls["n"] == 3
    assert_bit_identical(tiny.model, saved)


def test_target_loss_objectives():
    """target_new scores token j at position start-1+j; prompt_last scores every token at start-1."""
    batch = ft_module.TargetBatch(
        input_ids=torch.zeros(1, 5, dtype=torch.long),
        attention_mask=torch.ones(1, 5, dtype=torch.long),
        prompt_lengths=[2],
        target_ids=[[3, 4]],
    )
    logits = torch.randn(1, 5, 6, generator=torch.Generator().manual_seed(0))
    log_probs = torch.log_softmax(logits, dim=-1)[0]
    teacher = -(log_probs[1, 3] + log_probs[2, 4]) / 2
    last = -(log_probs[1, 3] + log_probs[1, 4]) / 2
    assert torch.allclose(ft_module.target_loss(logits, batch, "target_new"), teacher)
    assert torch.allclose(ft_module.target_loss(logits, batch, "prompt_last"), last)


def test_ft_l_inf_refuses_a_missing_bound(tiny):
    hparams = replace(load_hparams("ft-l-inf", tiny.name), norm_constraint=False)
    with pytest.raises(ValueError, match="norm_constraint"):
        get_editor("ft-l-inf").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, hparams)


# --- MEMIT ----------------------------------------------------------------------------------------


@pytest.fixture
def memit_hparams(tiny, tmp_path, monkeypatch):
    """tiny MEMIT hparams with key statistics from a small private corpus and cache."""
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Sentence {i}: the river runs past {i * 7} old stone houses." for i in range(40)))
    return replace(load_hparams("memit", tiny.name), mom2_dataset=str(corpus))


def test_closed_form_update_solves_its_normal_equations():
    generator = torch.Generator().manual_seed(0)
    keys, residuals = torch.randn(3, 16, generator=generator), torch.randn(3, 8, generator=generator)
    basis = torch.randn(16, 16, generator=generator)
    covariance = basis @ basis.T / 16 + 0.1 * torch.eye(16)
    r, adjusted = memit_module.closed_form_update(keys, residuals, covariance, 5.0)
    update = r @ adjusted.T
    k = keys.double().T
    lhs = update @ (5.0 * covariance.double() + k @ k.T)
    assert torch.allclose(lhs, residuals.double().T @ k.T, atol=1e-10)


def test_memit_layer_update_satisfies_normal_equations_on_model(tiny, memit_hparams):
    """Layer 1 (the first edited) sees the unedited model: rebuild K and C, check ΔW(λC + KKᵀ) = R Kᵀ."""
    saved = snapshot(tiny.model)
    delta = get_editor("memit").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, memit_hparams)
    assert_bit_identical(tiny.model, saved)
    assert delta.case_ids == ("tiny:0", "tiny:1")
    name = f"{tiny.arch.name('rewrite_module_tmp', 1)}.weight"
    assert {change.rank for change in delta.params.values()} == {len(TINY_CASES)}

    templates = context_templates(tiny.model, tiny.tokenizer, memit_hparams.context_template_length_params)
    module = tiny.model.get_submodule(tiny.arch.name("rewrite_module_tmp", 1))
    rows = [
        keys_at_templates(tiny.model, tiny.tokenizer, module, templates, case.prompt, case.subject, "subject_last")[0]
        for case in TINY_CASES
    ]
    groups = memit_module.template_groups(memit_hparams.context_template_length_params)
    keys = memit_module.grouped_mean(torch.stack(rows), groups).double().T  # (d_in, B)
    covariance = layer_covariance(
        tiny.model,
        tiny.tokenizer,
        tiny.arch.name("rewrite_module_tmp", 1),
        model_id=tiny.name,
        revision="unknown-revision",
        corpus_id=memit_hparams.mom2_dataset,
        n_samples=memit_hparams.mom2_n_samples,
    ).double()
    change = delta.params[name]
    conv1d = tiny.arch.weights_transposed
    update = change.materialize(torch.float64)
    update = update.T if conv1d else update  # (out, in)
    residuals = (change.v if conv1d else change.u).double()  # (out, B)
    lam = memit_hparams.mom2_update_weight
    lhs = update @ (lam * covariance + keys @ keys.T)
    rhs = residuals @ keys.T
    assert torch.linalg.norm(lhs - rhs) <= 1e-6 * torch.linalg.norm(rhs)


def test_memit_maps_keys_to_targets_with_weak_regularisation(tiny, memit_hparams):
    """One layer, bare prompts only, λ → 0: the edited block outputs z exactly at every case's subject."""
    hparams = replace(
        memit_hparams, layers=[2], context_template_length_params=[], mom2_adjustment=False, mom2_update_weight=1e-8
    )
    delta = get_editor("memit").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, hparams)
    before = delta.diagnostics["layers"][0]["z_error_mean"]
    assert before > 1e-3
    assert delta.diagnostics["z_error_after_mean"] < 1e-3 * before


def test_memit_raises_target_probability(tiny, memit_hparams):
    before = target_logprob(tiny, TINY_CASES)
    delta = get_editor("memit").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, memit_hparams)
    with delta.applied(tiny.model):
        after = target_logprob(tiny, TINY_CASES)
    assert all(post > pre for pre, post in zip(before, after, strict=True)), (before, after)
    assert delta.diagnostics["z_error_after_mean"] < delta.diagnostics["layers"][0]["z_error_mean"]


def test_memit_exception_mid_edit_leaves_model_unchanged(tiny, memit_hparams, monkeypatch):
    saved = snapshot(tiny.model)
    real_update = memit_module.closed_form_update
    calls = {"n": 0}

    def failing_update(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the first layer's update is already in the weights
            raise RuntimeError("injected failure")
        return real_update(*args, **kwargs)

    monkeypatch.setattr(memit_module, "closed_form_update", failing_update)
    with pytest.raises(RuntimeError, match="injected failure"):
        get_editor("memit").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, memit_hparams)
    assert calls["n"] == 2
    assert_bit_identical(tiny.model, saved)


# --- SmolLM2 (integration) ------------------------------------------------------------------------

SUCCESS = ("efficacy_success", "paraphrase_success", "neighborhood_success")


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(row[key] for row in rows) / len(rows) for key in SUCCESS}


@pytest.fixture(scope="module")
def geofacts5():
    from editcollapse.datasets import load_cases

    return load_cases("geofacts", limit=5).cases


@pytest.mark.slow
def test_memit_batch_of_5_on_smollm2(smollm2, geofacts5):
    from editcollapse.evaluation.edit_metrics import measure_cases

    # few covariance samples keep the test short (cached after the first run); the study uses the YAML's count
    hparams = replace(load_hparams("memit", "smollm2-135m"), model_revision=smollm2.revision, mom2_n_samples=200)
    saved = snapshot(smollm2.model)
    pre = mean_metrics(measure_cases(smollm2.model, smollm2.tokenizer, geofacts5))
    delta = get_editor("memit").edit(smollm2.model, smollm2.tokenizer, smollm2.arch, geofacts5, hparams)
    assert_bit_identical(smollm2.model, saved)
    with delta.applied(smollm2.model):
        post = mean_metrics(measure_cases(smollm2.model, smollm2.tokenizer, geofacts5))
    assert_bit_identical(smollm2.model, saved)
    assert post["efficacy_success"] >= 0.9, (pre, post)
    assert post["paraphrase_success"] >= pre["paraphrase_success"] + 0.3, (pre, post)
    assert abs(post["neighborhood_success"] - pre["neighborhood_success"]) <= 0.1, (pre, post)


@pytest.mark.slow
def test_ft_l_inf_runs_on_smollm2(smollm2, geofacts5):
    from editcollapse.evaluation.edit_metrics import measure_cases

    hparams = load_hparams("ft-l-inf", "smollm2-135m")
    saved = snapshot(smollm2.model)
    case = geofacts5[:1]
    pre = measure_cases(smollm2.model, smollm2.tokenizer, case)[0]
    delta = get_editor("ft-l-inf").edit(smollm2.model, smollm2.tokenizer, smollm2.arch, case, hparams)
    assert_bit_identical(smollm2.model, saved)
    assert max(change.dense.abs().max() for change in delta.params.values()) <= hparams.norm_constraint * 1.001
    with delta.applied(smollm2.model):
        post = measure_cases(smollm2.model, smollm2.tokenizer, case)[0]
    assert post["efficacy_magnitude"] > pre["efficacy_magnitude"]
