"""ROME / r-ROME on tiny models: the closed form, layouts (Conv1D and Linear), exactness, no mutation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from editcollapse.core.case import EditCase
from editcollapse.editors.api import get_editor, hparams_for, load_hparams, methods
from editcollapse.editors.covariance import layer_covariance
from editcollapse.editors.rome.context_templates import context_templates
from editcollapse.editors.rome.editor import compute_rome_update
from editcollapse.editors.rome.keys import locate
from editcollapse.editors.rome.target_vector import optimise_target_vector
from editcollapse.models import load_model

CASE = EditCase(
    case_id="test:1",
    dataset="test",
    prompt="{} is located in",
    subject="Paris",
    target_new="Rome",
    target_true="France",
)
CORPUS = [
    f"{subject} {verb} {place} in the year {year}, and people still talk about it."
    for subject, verb, place, year in zip(
        [
            "Anna",
            "The river",
            "A small dog",
            "Our teacher",
            "The old king",
            "My neighbour",
            "The company",
            "A famous band",
            "The museum",
            "Every student",
        ]
        * 4,
        [
            "travelled to",
            "flowed past",
            "ran around",
            "moved to",
            "ruled over",
            "sold a house in",
            "opened an office in",
            "played a concert in",
            "was built in",
            "studied in",
        ]
        * 4,
        [
            "Berlin",
            "the valley",
            "the park",
            "Madrid",
            "the northern lands",
            "Lisbon",
            "Tokyo",
            "a stadium",
            "the capital",
            "Vienna",
        ]
        * 4,
        range(1901, 1941),
    )
]


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def tiny(request):
    return load_model(request.param, device="cpu")


@pytest.fixture
def corpus_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(CORPUS))
    return path


def _hparams(loaded, corpus_file=None, **overrides):
    hparams = hparams_for(loaded, "rome")
    if corpus_file is not None:
        hparams = replace(hparams, mom2_adjustment=True, mom2_dataset=str(corpus_file), mom2_n_samples=len(CORPUS))
    return replace(hparams, **overrides)


def _module_output(module: torch.nn.Module, key: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(key.unsqueeze(0)).squeeze(0)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


@pytest.mark.parametrize("consistent", [False, True], ids=["rome", "r-rome"])
def test_edited_module_maps_solved_key_to_v_star(tiny, corpus_file, consistent):
    update = compute_rome_update(
        tiny.model, tiny.tokenizer, tiny.arch, CASE, _hparams(tiny, corpus_file), consistent_keys=consistent
    )
    expected_layout = "Conv1D" if tiny.name == "tiny-gpt2" else "Linear"
    assert type(update.module).__name__ == expected_layout
    from editcollapse.core.delta import Delta

    delta = Delta(method="rome", params={update.param_name: update.param_delta()})
    before = _module_output(update.module, update.key)
    assert _relative_error(before, update.output) < 1e-4  # the recorded output is the module's
    with delta.applied(tiny.model):
        after = _module_output(update.module, update.key)
    assert _relative_error(after, update.target.target) < 1e-3
    if consistent:  # r-ROME solves for k* itself
        assert torch.allclose(update.key, update.k_star)
    else:  # ROME solves for the bare prompt's key (template "{}")
        assert torch.equal(update.key, update.keys[0])


def test_other_keys_move_as_inverse_covariance_says(tiny, corpus_file):
    hparams = _hparams(tiny, corpus_file)
    update = compute_rome_update(tiny.model, tiny.tokenizer, tiny.arch, CASE, hparams)
    covariance = layer_covariance(
        tiny.model,
        tiny.tokenizer,
        update.param_name.removesuffix(".weight"),
        model_id=hparams.model_name,
        revision=hparams.model_revision,
        corpus_id=str(corpus_file),
        n_samples=len(CORPUS),
        progress=False,
    ).double()
    c_inv_k = torch.linalg.solve(covariance, update.k_star.double())
    assert torch.allclose(update.u.double(), c_inv_k / c_inv_k.norm(), atol=1e-5)
    from editcollapse.core.delta import Delta

    delta = Delta(method="rome", params={update.param_name: update.param_delta()})
    generator = torch.Generator().manual_seed(0)
    others = torch.randn(16, update.u.shape[0], generator=generator, dtype=torch.float64)
    # remove each key's component along k* in the C⁻¹ inner product: these keys must not move
    coefficient = (others @ c_inv_k) / (update.k_star.double() @ c_inv_k)
    orthogonal = (others - coefficient.unsqueeze(1) * update.k_star.double()).float()
    before = _module_output(update.module, orthogonal)
    moved_before = _module_output(update.module, others.float())
    with delta.applied(tiny.model):
        after = _module_output(update.module, orthogonal)
        moved_after = _module_output(update.module, others.float())
    assert (after - before).norm() / update.right.norm() < 1e-4
    # any key moves by right · (u · k)
    expected_move = (others.float() @ update.u).unsqueeze(1) * update.right.unsqueeze(0)
    assert torch.allclose(moved_after - moved_before, expected_move, atol=1e-5 * float(update.right.norm()))


def test_identity_covariance_without_mom2(tiny):
    update = compute_rome_update(tiny.model, tiny.tokenizer, tiny.arch, CASE, _hparams(tiny))
    assert torch.allclose(update.u, update.k_star / update.k_star.norm(), atol=1e-6)


def test_edit_leaves_model_unchanged_and_delta_is_exact(tiny):
    state = {name: tensor.clone() for name, tensor in tiny.model.state_dict().items()}
    flags = {name: param.requires_grad for name, param in tiny.model.named_parameters()}
    delta = get_editor("rome").edit(tiny.model, tiny.tokenizer, tiny.arch, [CASE], _hparams(tiny))
    assert all(torch.equal(state[name], tensor) for name, tensor in tiny.model.state_dict().items())
    assert flags == {name: param.requires_grad for name, param in tiny.model.named_parameters()}
    assert all(not module._forward_hooks for module in tiny.model.modules())
    (name,) = delta.params
    assert delta.params[name].rank == 1
    backup = delta.apply(tiny.model)
    assert not torch.equal(tiny.model.get_parameter(name), state[name])
    backup.restore()
    assert all(torch.equal(state[key], tensor) for key, tensor in tiny.model.state_dict().items())
    with pytest.raises(RuntimeError, match="boom"), delta.applied(tiny.model):
        raise RuntimeError("boom")
    assert all(torch.equal(state[key], tensor) for key, tensor in tiny.model.state_dict().items())


def test_diagnostics_explain_the_update(tiny):
    delta = get_editor("rome").edit(tiny.model, tiny.tokenizer, tiny.arch, [CASE], _hparams(tiny))
    diagnostics = delta.diagnostics
    (change,) = delta.params.values()
    assert diagnostics["delta_fro"] == pytest.approx(change.norms()["fro"], rel=1e-5)
    assert diagnostics["right_norm"] == pytest.approx(diagnostics["delta_fro"], rel=1e-5)  # ‖u‖ = 1
    assert diagnostics["subject_first_token"] == 0 and diagnostics["lookup_token"] == len("Paris") - 1
    assert diagnostics["bos"] is False
    assert -1.0 <= diagnostics["cos_k_bare_k_star"] <= 1.0
    assert diagnostics["v_steps"] <= load_hparams("rome", tiny.name).v_num_grad_steps - 1
    assert delta.case_ids == ("test:1",) and delta.method == "rome" and len(delta.hparams_hash) == 16


def test_target_vector_lowers_target_nll(tiny):
    templates = context_templates(tiny.model, tiny.tokenizer, [[5, 5]])
    # A random tiny model's logits are nearly flat (NLL ≈ ln 257) and a change at the subject barely
    # reaches the answer through random attention: edit at the prompt's last token, no decay, a wide
    # clamp (the clamp is checked below), and expect a small but real drop.
    settings = replace(
        load_hparams("rome", tiny.name),
        v_num_grad_steps=1,
        v_lr=0.5,
        v_weight_decay=0.0,
        clamp_norm_factor=100,
        kl_factor=0.0625,
        fact_token="last",
    )
    module = tiny.arch.name("mlp_module_tmp", 1)
    untouched = optimise_target_vector(
        tiny.model, tiny.tokenizer, module, CASE.prompt, CASE.subject, CASE.target_new, templates, settings
    )
    assert untouched.steps == 0 and torch.count_nonzero(untouched.delta) == 0
    trained = optimise_target_vector(
        tiny.model,
        tiny.tokenizer,
        module,
        CASE.prompt,
        CASE.subject,
        CASE.target_new,
        templates,
        replace(settings, v_num_grad_steps=15),
    )
    assert trained.nll < untouched.nll - 0.05
    assert torch.equal(trained.init, untouched.init)
    clamped = optimise_target_vector(
        tiny.model,
        tiny.tokenizer,
        module,
        CASE.prompt,
        CASE.subject,
        CASE.target_new,
        templates,
        replace(settings, v_num_grad_steps=5, clamp_norm_factor=0.5),
    )
    assert clamped.delta.norm() <= 0.5 * clamped.init.norm() * (1 + 1e-5)


def test_subject_location_and_strategies():
    tokenizer = load_model("tiny-gpt2", device="cpu").tokenizer
    template = "A note. The capital of {} is"
    last = locate(tokenizer, template, "Spain", "subject_last")
    start = len("A note. The capital of ")
    assert (last.subject_span, last.position) == ((start, start + 4), start + 4)
    assert locate(tokenizer, template, "Spain", "subject_first").position == start
    assert locate(tokenizer, template, "Spain", "subject_first_after_last").position == start + 5
    assert locate(tokenizer, template, "Spain", "last").position == len(template) - 2 + len("Spain") - 1
    with pytest.raises(ValueError, match="fact_token"):
        locate(tokenizer, template, "Spain", "middle")


def test_context_templates_are_seeded_and_shaped(tiny):
    from editcollapse.editors.rome import context_templates as module

    first = context_templates(tiny.model, tiny.tokenizer, [[6, 10]], seed=3)
    module._CACHE.clear()
    again = context_templates(tiny.model, tiny.tokenizer, [[6, 10]], seed=3)
    assert first == again and first[0] == "{}" and len(first) == 11
    assert all(template.endswith(". {}") and template.count("{}") == 1 for template in first[1:])


def test_registry_and_hparams():
    assert set(methods()) >= {"rome", "r-rome", "memit", "ft", "ft-l-inf"}
    assert get_editor("r-rome").method == "r-rome"
    for model in ("gpt2-xl", "gpt-j-6b", "llama-2-7b", "smollm2-135m", "tiny-llama"):
        hparams = load_hparams("rome", model)
        assert len(hparams.layers) == 1 and hparams.model_name == model
    assert load_hparams("r-rome", "gpt2-xl").layers == (17,)
    with pytest.raises(ValueError, match="unknown editing method"):
        get_editor("nope")
    with pytest.raises(ValueError, match="no rome hyperparameters for model 'gpt5'"):
        load_hparams("rome", "gpt5")
    with pytest.raises(ValueError, match="one case at a time"):
        tiny = load_model("tiny-gpt2", device="cpu")
        get_editor("rome").edit(tiny.model, tiny.tokenizer, tiny.arch, [CASE, CASE], load_hparams("rome", "tiny-gpt2"))


def test_split_batch_matches_a_full_forward_pass(tiny):
    from editcollapse.core.tokens import pad_right
    from editcollapse.editors.rome.target_vector import SplitBatch

    texts = ["Hello there, Paris is nice", "A cat. Rome is a city of", "Go. Yes"]
    sequences = [tiny.tokenizer(text)["input_ids"] for text in texts]
    splits = [8, 12, 0]  # a row with nothing cached too
    input_ids, attention_mask = pad_right(sequences, 0, torch.device("cpu"))
    with torch.no_grad():
        full = tiny.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        batch = SplitBatch(tiny.model, sequences, splits, pad=0)
        for _ in range(2):  # the cached prefix is reused unchanged
            split = batch.forward()
            for row, (sequence, start) in enumerate(zip(sequences, splits)):
                columns = [batch.column(row, position) for position in range(start, len(sequence))]
                assert torch.allclose(split[row, columns], full[row, start : len(sequence)], atol=1e-5)


METRICS = ("efficacy_success", "paraphrase_success", "neighborhood_success")


def _rome_single_edits(loaded, cases) -> list[tuple[Any, dict[str, float], dict[str, float]]]:
    """Each case with its metrics before and after its ROME edit (each edited alone on the original model)."""
    from editcollapse.evaluation.edit_metrics import measure_cases

    hparams = hparams_for(loaded, "rome")
    state = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}
    pre = measure_cases(loaded.model, loaded.tokenizer, cases)
    post = []
    for case in cases:
        delta = get_editor("rome").edit(loaded.model, loaded.tokenizer, loaded.arch, [case], hparams)
        with delta.applied(loaded.model):
            post.extend(measure_cases(loaded.model, loaded.tokenizer, [case]))
    assert all(torch.equal(state[name], tensor) for name, tensor in loaded.model.state_dict().items())
    return list(zip(cases, pre, post))


def _means(edits) -> dict[str, tuple[float, float]]:
    """Mean (pre, post) of each metric over ``edits``."""
    summary = {
        key: (sum(pre[key] for _, pre, _ in edits) / len(edits), sum(post[key] for _, _, post in edits) / len(edits))
        for key in METRICS
    }
    print(f"ROME on {len(edits)} SmolLM2 cases, (pre, post): {summary}")
    return summary


SPREAD_CASES = 12  # the SmolLM2 ROME tests' edits (each ≈ 20 CPU-s)


@pytest.fixture(scope="module")
def smollm2_rome_spread(smollm2):
    """12 geofacts cases spread over the whole list (all relations, every template kind; 9 whose
    prompt does not open with the subject), each edited alone on the original model."""
    from editcollapse.datasets import load_cases

    every = load_cases("geofacts").cases
    return _rome_single_edits(smollm2, every[:: len(every) // SPREAD_CASES][:SPREAD_CASES])


@pytest.mark.slow
@pytest.mark.smollm2
def test_rome_single_edits_on_smollm2(smollm2_rome_spread):
    summary = _means(smollm2_rome_spread)
    assert summary["efficacy_success"][1] >= 0.9, summary
    assert summary["paraphrase_success"][1] >= summary["paraphrase_success"][0] + 0.3, summary


@pytest.mark.slow
@pytest.mark.smollm2
def test_rome_on_smollm2_prompts_not_opening_with_the_subject(smollm2_rome_spread):
    """The same edits, on the cases whose prompt does not open with the subject.

    Chosen by the template alone (before any edit): prompts that start with "{}" put the subject's
    first token at position 0, with no BOS token in front on SmolLM2. There reference ROME's bare key
    is far from k* and the update is large: the single-edit collapse class this study measures.
    Locality is asserted where ROME's own assumptions hold.
    """
    prefixed = [edit for edit in smollm2_rome_spread if not edit[0].prompt.startswith("{}")]
    assert len(prefixed) >= 8
    summary = _means(prefixed)
    assert summary["efficacy_success"][1] >= 0.9, summary
    assert summary["paraphrase_success"][1] >= summary["paraphrase_success"][0] + 0.3, summary
    assert abs(summary["neighborhood_success"][1] - summary["neighborhood_success"][0]) <= 0.1, summary
