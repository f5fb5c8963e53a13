"""Delta: exact apply/remove, crash safety, composition, norms, safetensors round trip."""

from __future__ import annotations

import pytest
import torch

from editcollapse.editors import Delta, ParamDelta
from editcollapse.models import load_model


@pytest.fixture()
def tiny():
    return load_model("tiny-llama", device="cpu", seed=0)


def _rank_one(tiny, layer: int, seed: int, scale: float = 1.0) -> Delta:
    weight = tiny.arch.rewrite_weight(tiny.model, layer)
    generator = torch.Generator().manual_seed(seed)
    u = torch.randn(weight.shape[0], 1, generator=generator) * scale
    v = torch.randn(weight.shape[1], 1, generator=generator)
    name = tiny.arch.name("rewrite_module_tmp", layer) + ".weight"
    return Delta(method="test", params={name: ParamDelta(u=u, v=v)}, case_ids=(f"case:{seed}",))


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_apply_then_remove_is_bit_exact(tiny) -> None:
    before = _snapshot(tiny.model)
    delta = _rank_one(tiny, 1, seed=0, scale=1e-3)  # a small change whose float sum does not round-trip
    backup = delta.apply(tiny.model)
    changed = tiny.arch.rewrite_weight(tiny.model, 1)
    name = tiny.arch.name("rewrite_module_tmp", 1) + ".weight"
    assert not torch.equal(changed, before[name])
    torch.testing.assert_close(changed, before[name] + delta.params[name].materialize())
    backup.restore()
    after = _snapshot(tiny.model)
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_exception_inside_context_restores(tiny) -> None:
    before = _snapshot(tiny.model)
    with pytest.raises(RuntimeError, match="boom"):
        with _rank_one(tiny, 2, seed=1).applied(tiny.model):
            raise RuntimeError("boom")
    after = _snapshot(tiny.model)
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_bad_shape_leaves_model_untouched(tiny) -> None:
    before = _snapshot(tiny.model)
    good = _rank_one(tiny, 0, seed=2)
    bad_name = tiny.arch.name("rewrite_module_tmp", 3) + ".weight"
    bad = Delta(method="test", params={**good.params, bad_name: ParamDelta(dense=torch.ones(2, 2))})
    with pytest.raises(ValueError, match="has shape"):
        bad.apply(tiny.model)
    after = _snapshot(tiny.model)
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_composition_is_the_sum(tiny) -> None:
    first, second = _rank_one(tiny, 1, seed=3), _rank_one(tiny, 1, seed=4)
    total = first + second
    name = next(iter(first.params))
    assert total.params[name].rank == 2
    torch.testing.assert_close(
        total.params[name].materialize(), first.params[name].materialize() + second.params[name].materialize()
    )
    assert total.case_ids == ("case:3", "case:4")
    dense = Delta(method="ft", params={name: ParamDelta(dense=torch.ones_like(total.params[name].materialize()))})
    mixed = total + dense
    torch.testing.assert_close(mixed.params[name].materialize(), total.params[name].materialize() + 1)


def test_norms_match_direct_computation(tiny) -> None:
    delta = _rank_one(tiny, 1, seed=5) + _rank_one(tiny, 1, seed=6)
    name = next(iter(delta.params))
    change = delta.params[name]
    dense = change.u.double() @ change.v.double().T
    norms = delta.norms()[name]
    assert norms["fro"] == pytest.approx(torch.linalg.matrix_norm(dense, "fro").item(), rel=1e-9)
    assert norms["spectral"] == pytest.approx(torch.linalg.matrix_norm(dense, 2).item(), rel=1e-9)


def test_safetensors_round_trip(tiny, tmp_path) -> None:
    delta = _rank_one(tiny, 1, seed=7)
    delta.diagnostics = {"denominator": 0.25}
    name = tiny.arch.name("rewrite_module_tmp", 2) + ".weight"
    delta.params[name] = ParamDelta(dense=torch.randn_like(tiny.arch.rewrite_weight(tiny.model, 2)))
    path = tmp_path / "delta.safetensors"
    delta.save(path)
    loaded = Delta.load(path)
    assert loaded.method == "test" and loaded.case_ids == ("case:7",)
    assert loaded.diagnostics == {"denominator": 0.25}
    for key, change in delta.params.items():
        assert torch.equal(change.materialize(), loaded.params[key].materialize())


def test_carried_rows_stack_in_order_survive_storage_and_are_never_applied(tiny, tmp_path) -> None:
    first, second, third = (_rank_one(tiny, 1, seed=s) for s in (8, 9, 10))
    name = next(iter(first.params))
    first.carry = {name: torch.full((1, 4), 1.0)}
    second.carry = {name: torch.full((2, 4), 2.0), "other": torch.zeros(1, 3)}
    total = first + second + third  # third carries nothing
    assert torch.equal(total.carry[name], torch.tensor([[1.0] * 4, [2.0] * 4, [2.0] * 4]))
    assert torch.equal(total.carry["other"], torch.zeros(1, 3))
    total.save(tmp_path / "carry.safetensors")
    loaded = Delta.load(tmp_path / "carry.safetensors")
    assert set(loaded.carry) == {name, "other"}
    assert all(torch.equal(loaded.carry[key], rows) for key, rows in total.carry.items())
    third.save(tmp_path / "none.safetensors")
    assert Delta.load(tmp_path / "none.safetensors").carry == {}
    before = _snapshot(tiny.model)
    with total.applied(tiny.model):  # only the parameters change
        changed = {key for key, value in tiny.model.state_dict().items() if not torch.equal(value, before[key])}
    assert changed == {name}


def test_load_rejects_foreign_file(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="not an editcollapse delta"):
        Delta.load(path)


@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (4, 3, 2, 2)])
def test_norms_of_dense_changes_of_any_shape(shape) -> None:
    dense = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    norms = ParamDelta(dense=dense).norms()
    matrix = dense.double().reshape(shape[0] if shape else 1, -1)
    assert norms["fro"] == pytest.approx(dense.double().norm().item(), rel=1e-12)
    assert norms["spectral"] == pytest.approx(torch.linalg.matrix_norm(matrix, 2).item(), rel=1e-9)
    if len(shape) <= 1:  # a vector's (or scalar's) only singular value is its Euclidean norm
        assert norms["spectral"] == pytest.approx(norms["fro"], rel=1e-12)


def test_bias_delta_applies_exactly_and_reports_norms(tmp_path) -> None:
    gpt2 = load_model("tiny-gpt2", device="cpu", seed=0)
    name = "transformer.h.1.mlp.c_proj.bias"
    bias = gpt2.model.get_parameter(name)
    saved = bias.detach().clone()
    change = torch.linspace(-1, 1, bias.numel())
    delta = Delta(method="test", params={name: ParamDelta(dense=change)})
    assert delta.norms()[name]["fro"] == pytest.approx(change.double().norm().item(), rel=1e-12)
    with delta.applied(gpt2.model):
        assert torch.equal(gpt2.model.get_parameter(name), saved + change)
    assert torch.equal(gpt2.model.get_parameter(name), saved)
    delta.save(tmp_path / "bias.safetensors")
    assert torch.equal(Delta.load(tmp_path / "bias.safetensors").params[name].dense, change)
