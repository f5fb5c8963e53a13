"""AlphaEdit: the reference's update formula, the null space it keeps, exact restore, learning, its key cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from editcollapse.core.delta import Delta
from editcollapse.editors.alphaedit import editor as alphaedit_module
from editcollapse.editors.api import edit_after, get_editor, load_hparams
from editcollapse.editors.covariance import second_moment
from editcollapse.models import load_model
from tests.test_editors_memit_ft import TINY_CASES, assert_bit_identical, snapshot, target_logprob

CORPUS = [f"Sentence {i}: the river runs past {i * 7} old stone houses." for i in range(40)]


def reference_update(keys, residuals, projection, earlier, l2) -> torch.Tensor:
    """The reference code's dense solve, transposed to (out, in): ``solve(P(KKᵀ + K_pK_pᵀ) + L2·I, P K Rᵀ)ᵀ``."""
    k, r, p = keys.double().T, residuals.double().T, projection.double()
    cache = torch.zeros(k.shape[0], k.shape[0], dtype=torch.float64) if earlier is None else earlier.double().T
    cache = cache @ cache.T if earlier is not None else cache
    system = p @ (k @ k.T + cache) + l2 * torch.eye(k.shape[0], dtype=torch.float64)
    return torch.linalg.solve(system, p @ k @ r.T).T


def random_covariance(d: int, generator: torch.Generator) -> torch.Tensor:
    """An SPD matrix with eigenvalues spread over four decades (some below, some above 1e-2)."""
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return basis @ torch.diag(torch.logspace(-4, 0, d, dtype=torch.float64)) @ basis.T


def test_null_space_projection_is_the_projector_onto_the_small_eigenvectors():
    covariance = random_covariance(24, torch.Generator().manual_seed(0))
    projection, dimension = alphaedit_module.null_space_projection(covariance, 1e-2)
    values, vectors = torch.linalg.eigh(covariance)
    assert dimension == int((values < 1e-2).sum()) and 0 < dimension < 24
    assert torch.allclose(projection, projection.T) and torch.allclose(projection @ projection, projection, atol=1e-12)
    assert torch.linalg.matrix_norm(projection @ vectors[:, values >= 1e-2]) < 1e-12  # kept directions vanish
    assert torch.allclose(projection @ vectors[:, values < 1e-2], vectors[:, values < 1e-2], atol=1e-12)


@pytest.mark.parametrize("n_earlier", [0, 3])
def test_projected_update_is_the_reference_solve(n_earlier):
    generator = torch.Generator().manual_seed(1)
    keys, residuals = torch.randn(2, 16, generator=generator), torch.randn(2, 8, generator=generator)
    earlier = torch.randn(n_earlier, 16, generator=generator) if n_earlier else None
    projection, _ = alphaedit_module.null_space_projection(random_covariance(16, generator), 1e-2)
    r, x = alphaedit_module.projected_update(keys, residuals, projection, earlier, 0.5)
    expected = reference_update(keys, residuals, projection, earlier, 0.5)
    assert torch.allclose(r @ x.T, expected, atol=1e-10 * float(expected.abs().max()))


def test_projected_update_refuses_keys_of_another_size():
    with pytest.raises(ValueError, match="carry keys of size 8"):
        alphaedit_module.projected_update(torch.ones(1, 4), torch.ones(1, 3), torch.eye(4), torch.ones(2, 8), 1.0)


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def tiny(request):
    return load_model(request.param, device="cpu")


@pytest.fixture
def hparams(tiny, tmp_path, monkeypatch):
    """tiny AlphaEdit hparams, key statistics from a small private corpus and cache. A random tiny model's
    logits are nearly flat (NLL ≈ ln 257): as in ROME's target-vector test, the target is read at the
    prompt's last token with no decay and a wide clamp, so an edit moves the target's probability visibly;
    bare prompts only (no sampled context templates) keep the tests fast."""
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS))
    return replace(
        load_hparams("alphaedit", tiny.name),
        model_revision=tiny.revision,
        mom2_dataset=str(corpus),
        fact_token="last",
        v_num_grad_steps=15,
        v_weight_decay=0.0,
        clamp_norm_factor=100,
        context_template_length_params=[],
    )


def first_layer(tiny, delta: Delta) -> tuple[str, torch.Tensor, torch.Tensor]:
    """The first edited layer's module name, its ΔW in (out, in) layout, and R (out, B)."""
    name = f"{tiny.arch.name('rewrite_module_tmp', 1)}.weight"
    change = delta.params[name]
    update = change.materialize(torch.float64)
    if tiny.arch.weights_transposed:  # GPT-2 Conv1D keeps (in, out)
        return name.removesuffix(".weight"), update.T, change.v.double()
    return name.removesuffix(".weight"), update, change.u.double()


def test_alphaedit_restores_exactly_and_raises_the_targets(tiny, hparams, tmp_path: Path):
    saved = snapshot(tiny.model)
    before = target_logprob(tiny, TINY_CASES)
    delta = get_editor("alphaedit").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, hparams)
    assert_bit_identical(tiny.model, saved)
    assert delta.method == "alphaedit" and delta.case_ids == ("tiny:0", "tiny:1")
    assert {change.rank for change in delta.params.values()} == {len(TINY_CASES)}
    assert set(delta.carry) == set(delta.params)  # this edit's keys, per edited matrix
    assert all(keys.shape[0] == len(TINY_CASES) for keys in delta.carry.values())
    with delta.applied(tiny.model):
        after = target_logprob(tiny, TINY_CASES)
    assert_bit_identical(tiny.model, saved)
    for pre, post in zip(before, after, strict=True):
        assert post > pre + 0.2, (before, after)
    assert [layer["earlier_keys"] for layer in delta.diagnostics["layers"]] == [0, 0]
    assert all(0 < layer["null_dim"] < 128 for layer in delta.diagnostics["layers"])
    # stored and read back bit for bit, keys included
    delta.save(tmp_path / "d.safetensors")
    loaded = Delta.load(tmp_path / "d.safetensors")
    assert all(torch.equal(loaded.carry[name], keys) for name, keys in delta.carry.items())
    assert all(torch.equal(loaded.params[name].u, change.u) for name, change in delta.params.items())


def test_alphaedit_leaves_the_preserved_keys_unchanged(tiny, hparams):
    """At the first edited layer: mean ‖ΔW k₀‖² over the covariance corpus' keys k₀ (= tr ΔW C ΔWᵀ) is
    at most threshold·‖ΔW‖²_F, since ΔW = ΔW P; the same keys and residuals solved without P move them
    at least five times as much (tiny-llama: 9×; its corpus keys are small in every direction)."""
    delta = get_editor("alphaedit").edit(tiny.model, tiny.tokenizer, tiny.arch, TINY_CASES, hparams)
    module, update, residuals = first_layer(tiny, delta)
    total, count = second_moment(tiny.model, tiny.tokenizer, module, CORPUS, progress=False)
    covariance = total / count  # exactly the mean of k₀k₀ᵀ over the corpus' tokens

    def preserved_change(change: torch.Tensor) -> float:
        """mean ‖ΔW k₀‖² / ‖ΔW‖²_F"""
        return float(torch.trace(change @ covariance @ change.T) / change.norm() ** 2)

    threshold = hparams.nullspace_threshold
    assert preserved_change(update) <= threshold
    values, vectors = torch.linalg.eigh(covariance)
    kept = vectors[:, values >= threshold]  # the directions the corpus' keys occupy
    assert torch.linalg.matrix_norm(update @ kept) <= 1e-6 * torch.linalg.matrix_norm(update)
    # the first layer's keys are the ones carried (no layer before it changed): the reference code's
    # dense solve on the same keys, residuals and P gives the same ΔW; without P it moves the corpus' keys
    keys = delta.carry[f"{module}.weight"]
    projection, _ = alphaedit_module.hparams_projection(tiny.model, tiny.tokenizer, module, hparams)
    reference = reference_update(keys, residuals.T, projection, None, float(hparams.L2))
    assert torch.linalg.matrix_norm(update - reference) <= 1e-9 * torch.linalg.matrix_norm(reference)
    identity = torch.eye(keys.shape[1], dtype=torch.float64)
    r, x = alphaedit_module.projected_update(keys, residuals.T, identity, None, float(hparams.L2))
    projected, unprojected = preserved_change(update), preserved_change(r @ x.T)
    assert unprojected > 5 * projected, (projected, unprojected)


def test_the_second_edit_preserves_the_first_edits_keys(tiny, hparams):
    """Sequential: the second edit, given the first as ``earlier``, barely moves the first edit's keys;
    the same edit without them moves those keys far more. The cache holds a key ``k`` to within the
    factor ``L2 / (L2 + ‖P k‖²)``; ‖P k‖² is ~4e-4 at tiny-gpt2's second layer, so a small ``L2``
    shows the effect sharply."""
    hparams = replace(hparams, L2=1e-6)
    first_case, second_case = TINY_CASES
    editor = get_editor("alphaedit")
    first = editor.edit(tiny.model, tiny.tokenizer, tiny.arch, [first_case], hparams)
    with first.applied(tiny.model):
        cached = edit_after("alphaedit", editor, tiny.model, tiny.tokenizer, tiny.arch, [second_case], hparams, first)
        uncached = edit_after("alphaedit", editor, tiny.model, tiny.tokenizer, tiny.arch, [second_case], hparams, None)
    assert [layer["earlier_keys"] for layer in cached.diagnostics["layers"]] == [1, 1]
    assert [layer["earlier_keys"] for layer in uncached.diagnostics["layers"]] == [0, 0]
    for name, keys in first.carry.items():  # the first edit's keys with the first edit in place
        moved = {
            label: float(
                (delta.params[name].materialize(torch.float64) @ keys.double().T).norm()
                if not tiny.arch.weights_transposed
                else (keys.double() @ delta.params[name].materialize(torch.float64)).norm()
            )
            for label, delta in (("cached", cached), ("uncached", uncached))
        }
        assert moved["cached"] < 0.1 * moved["uncached"], (name, moved)
    both = first + cached  # a trajectory's running sum carries both edits' keys, in order
    assert all(torch.equal(both.carry[name][:1], keys) for name, keys in first.carry.items())
    assert {rows.shape[0] for rows in both.carry.values()} == {2}


@pytest.mark.slow
def test_alphaedit_single_edits_on_smollm2(smollm2):
    """The packaged SmolLM2 file: three of the six spread geofacts cases its settings were chosen on
    (bench/alphaedit_smollm2.py), each edited alone: learned, neighbourhood kept, model unchanged."""
    from editcollapse.datasets import load_cases
    from editcollapse.evaluation.edit_metrics import measure_cases

    everything = load_cases("geofacts").cases
    cases = everything[:: len(everything) // 6][:3]
    hparams = replace(load_hparams("alphaedit", "smollm2-135m"), model_revision=smollm2.revision)
    saved = snapshot(smollm2.model)
    pre = measure_cases(smollm2.model, smollm2.tokenizer, cases)
    post = []
    for case in cases:
        delta = get_editor("alphaedit").edit(smollm2.model, smollm2.tokenizer, smollm2.arch, [case], hparams)
        assert_bit_identical(smollm2.model, saved)
        with delta.applied(smollm2.model):
            post += measure_cases(smollm2.model, smollm2.tokenizer, [case])
    assert_bit_identical(smollm2.model, saved)
    assert all(row["efficacy_success"] == 1.0 for row in post), post
    neighbourhood = [sum(row["neighborhood_success"] for row in rows) / len(rows) for rows in (pre, post)]
    assert neighbourhood[1] >= neighbourhood[0] - 0.1, neighbourhood
