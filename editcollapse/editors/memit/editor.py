"""MEMIT (Meng et al. 2023): a batch of facts written into the MLPs of several layers at once.

Follows ``memit/memit_main.py`` of kmeng01/memit (and EasyEdit's ``memit``):

1. For each case, ``z`` = the target output of the *last* edited layer's block (``layer_module_tmp``)
   at the subject's lookup token, optimised as ROME's v*
   (:func:`~editcollapse.editors.rome.target_vector.optimise_target_vector`).
2. For each edited layer ``l`` in order, with the updates of the layers before it in place:
   keys ``K_l`` = the rewrite module's input at the lookup token, averaged over the context templates
   (first within each template group — the bare ``"{}"``, then each generated length — then over the
   groups, as the reference's ``compute_ks``); residuals ``R_l = (z − h_L) / (number of layers left)``
   with ``h_L`` the last edited layer's current output on the bare prompts; covariance
   ``C_l = E[k kᵀ]`` of the rewrite module's inputs;
   ``ΔW_l = R_l K_lᵀ (λ C_l + K_l K_lᵀ)⁻¹`` with ``λ = mom2_update_weight``, solved in float64.
3. Each ΔW_l is applied before the next layer's keys are read, as the reference does, and every
   weight is restored afterwards (also on errors): the model leaves unchanged, the result is a
   :class:`Delta` of rank ``batch size`` per layer (factors ``R_l`` and ``(λC_l + K_lK_lᵀ)⁻¹K_l``).

``mom2_adjustment: false`` replaces ``C_l`` by the identity (the reference always uses ``C_l``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta, ParamDelta, WeightBackup
from editcollapse.core.tokens import pad_id_of as pad_id
from editcollapse.editors.covariance import hparams_covariance
from editcollapse.editors.memit.hparams import MEMITHparams, MultiLayerHparams
from editcollapse.editors.rome.context_templates import templates_for
from editcollapse.editors.rome.keys import Located, fill, locate
from editcollapse.editors.rome.target_vector import optimise_target_vector
from editcollapse.models.archmap import ArchMap
from editcollapse.models.hooks import module_io_at

FORWARD_CHUNK = 256  # sequences per forward pass when reading keys


def closed_form_update(
    keys: torch.Tensor, residuals: torch.Tensor, covariance: torch.Tensor | None, mom2_update_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """MEMIT's least-squares update ``ΔW = R Kᵀ (λC + K Kᵀ)⁻¹`` as factors, in float64.

    ``keys`` (B, d_in) and ``residuals`` (B, d_out) hold one case per row; ``covariance`` (d_in, d_in)
    is ``C`` (None: the identity). Returns ``(R, A)`` with ``R`` (d_out, B) and
    ``A = (λC + K Kᵀ)⁻¹ K`` (d_in, B), so that ``ΔW = R Aᵀ`` in (out, in) layout.
    """
    if keys.shape[0] != residuals.shape[0]:
        raise ValueError(f"{keys.shape[0]} keys but {residuals.shape[0]} residuals")
    k = keys.double().T
    r = residuals.double().T
    c = (
        torch.eye(k.shape[0], dtype=torch.float64, device=k.device)
        if covariance is None
        else covariance.to(dtype=torch.float64, device=k.device)
    )
    adjusted = torch.linalg.solve(mom2_update_weight * c + k @ k.T, k)
    return r, adjusted


def layer_param_delta(module: nn.Module, r: torch.Tensor, adjusted: torch.Tensor) -> ParamDelta:
    """``ΔW = R Aᵀ`` in the weight's layout: ``nn.Linear`` (out, in), GPT-2 ``Conv1D`` (in, out)."""
    if isinstance(module, nn.Linear):
        return ParamDelta(u=r, v=adjusted)
    if type(module).__name__ == "Conv1D":
        return ParamDelta(u=adjusted, v=r)
    raise TypeError(f"MEMIT rewrites nn.Linear or Conv1D modules, not {type(module).__name__}")


def template_groups(length_params: Sequence[Sequence[int]], given: Sequence[str] | None = None) -> list[int]:
    """Sizes of the context-template groups: ``"{}"`` alone, then one group per (length, n_gen), or
    the ``given`` templates after ``"{}"`` as one group."""
    sampled = [5 * (int(n_gen) // 5) for _, n_gen in length_params]
    sizes = [1] + (sampled if given is None else [len(given) - 1])
    return [size for size in sizes if size > 0]


def grouped_mean(values: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """(B, T, d) → (B, d): the mean within each template group, then the mean over groups."""
    if sum(groups) != values.shape[1]:
        raise ValueError(f"template groups {list(groups)} do not add up to {values.shape[1]} templates")
    means = [chunk.mean(1) for chunk in torch.split(values, list(groups), dim=1)]
    return torch.stack(means, 0).mean(0)


@dataclass
class _Lookups:
    """Every case behind every template, tokenised, with the lookup positions."""

    located: list[list[Located]]  # [case][template]

    def flat(self) -> tuple[list[list[int]], list[int]]:
        items = [item for row in self.located for item in row]
        return [item.ids for item in items], [item.position for item in items]

    def bare(self) -> tuple[list[list[int]], list[int]]:
        return [row[0].ids for row in self.located], [row[0].position for row in self.located]


def _module_io(
    model: nn.Module, module: nn.Module, sequences: list[list[int]], positions: list[int], pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`module_io_at` in chunks of :data:`FORWARD_CHUNK` sequences."""
    parts = [
        module_io_at(
            model, module, sequences[start : start + FORWARD_CHUNK], positions[start : start + FORWARD_CHUNK], pad
        )
        for start in range(0, len(sequences), FORWARD_CHUNK)
    ]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


LayerSolve = Callable[[int, str, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]
"""A method's per-layer update: ``(layer, module name, keys (B, d_in), residuals (B, d_out))`` →
``(R, A, extra diagnostics)`` with ``ΔW = R Aᵀ`` in (out, in) layout (MEMIT: :func:`closed_form_update`)."""


@dataclass(frozen=True)
class LayerEdit:
    """What :func:`edit_layers` computed: the per-layer changes, the diagnostics, the keys afterwards."""

    params: dict[str, ParamDelta]
    diagnostics: dict[str, Any]
    keys_after: dict[str, torch.Tensor]  # weight name → (B, d_in) keys read with the whole edit in place


def edit_layers(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    arch: ArchMap,
    cases: list[EditCase],
    hparams: MultiLayerHparams,
    solve: LayerSolve,
    *,
    keys_after: bool = False,
) -> LayerEdit:
    """MEMIT's multi-layer edit (steps 1–3 of the module docstring) with the per-layer update ``solve``.

    MEMIT and AlphaEdit share everything but ``solve``. ``keys_after``: also read every edited
    layer's keys with all the layers' updates in place (AlphaEdit carries them to later edits).
    The model is left as it was, also on errors.
    """
    if not cases:
        raise ValueError(f"{hparams.method} needs at least one case")
    layers = list(hparams.layers)
    rewrite_tmp = hparams.rewrite_module_tmp or arch.rewrite_module_tmp
    z_name = (hparams.layer_module_tmp or arch.layer_module_tmp).format(layers[-1])
    templates = templates_for(model, tokenizer, hparams)
    groups = template_groups(hparams.context_template_length_params, given=hparams.context_templates)
    lookups = _Lookups(
        [
            [locate(tokenizer, fill(template, case.prompt), case.subject, hparams.fact_token) for template in templates]
            for case in cases
        ]
    )
    pad = pad_id(tokenizer)

    targets = [
        optimise_target_vector(model, tokenizer, z_name, case.prompt, case.subject, case.target_new, templates, hparams)
        for case in cases
    ]
    zs = torch.stack([target.target for target in targets])
    z_module = model.get_submodule(z_name)

    def z_now() -> torch.Tensor:
        return _module_io(model, z_module, *lookups.bare(), pad)[1]

    def keys_at(module: nn.Module) -> torch.Tensor:
        inputs, _ = _module_io(model, module, *lookups.flat(), pad)
        return grouped_mean(inputs.view(len(cases), len(templates), -1), groups)

    weight_names = [f"{rewrite_tmp.format(layer)}.weight" for layer in layers]
    params: dict[str, ParamDelta] = {}
    per_layer: list[dict[str, Any]] = []
    after: dict[str, torch.Tensor] = {}
    backup = WeightBackup(model, weight_names)
    try:
        for index, (layer, weight_name) in enumerate(zip(layers, weight_names, strict=True)):
            module_name = rewrite_tmp.format(layer)
            module = model.get_submodule(module_name)
            keys = keys_at(module)
            z_error = zs - z_now()
            residuals = z_error / (len(layers) - index)
            r, adjusted, extra = solve(layer, module_name, keys, residuals)
            change = layer_param_delta(module, r, adjusted)
            weight = backup.parameters[weight_name]
            with torch.no_grad():
                weight.add_(change.materialize(weight.dtype, weight.device))
            params[weight_name] = change
            per_layer.append(
                {
                    "layer": layer,
                    "z_error_mean": float(z_error.norm(dim=1).mean()),
                    "residual_norm_mean": float(residuals.norm(dim=1).mean()),
                    "key_norm_mean": float(keys.norm(dim=1).mean()),
                    "delta_fro": change.norms()["fro"],
                    "weight_fro": float(weight.detach().double().norm()),
                    **extra,
                }
            )
        final_error = (zs - z_now()).norm(dim=1)
        if keys_after:
            after = {
                weight_name: keys_at(model.get_submodule(rewrite_tmp.format(layer)))
                for layer, weight_name in zip(layers, weight_names, strict=True)
            }
    finally:
        backup.restore()
    diagnostics = {
        "layers": per_layer,
        "z_layer": layers[-1],
        "z_error_after_mean": float(final_error.mean()),
        "z_init_norm_mean": float(torch.stack([t.init.norm() for t in targets]).mean()),
        "z_delta_norm_mean": float(torch.stack([t.delta.norm() for t in targets]).mean()),
        "target_prob_mean": sum(t.target_prob for t in targets) / len(targets),
        "z_steps": [t.steps for t in targets],
        "n_templates": len(templates),
        "batch_size": len(cases),
    }
    return LayerEdit(params=params, diagnostics=diagnostics, keys_after=after)


@dataclass(frozen=True)
class MEMITEditor:
    """The :class:`~editcollapse.editors.api.Editor` of ``"memit"``."""

    method: str = "memit"

    def edit(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        cases: list[EditCase],
        hparams: MEMITHparams,
    ) -> Delta:
        """One MEMIT batch: all ``cases`` at once, a rank-``len(cases)`` update per layer."""

        def solve(_layer: int, module_name: str, keys: torch.Tensor, residuals: torch.Tensor):
            covariance = hparams_covariance(model, tokenizer, module_name, hparams) if hparams.mom2_adjustment else None
            r, adjusted = closed_form_update(keys, residuals, covariance, float(hparams.mom2_update_weight))
            return r, adjusted, {}

        result = edit_layers(model, tokenizer, arch, cases, hparams, solve)
        return Delta(
            method=self.method,
            params=result.params,
            hparams_hash=hparams.hash(),
            case_ids=tuple(case.case_id for case in cases),
            diagnostics=result.diagnostics,
        )


def editor(method: str) -> MEMITEditor:
    """The MEMIT editor (the registry in :mod:`editcollapse.editors.api` calls this)."""
    if method != "memit":
        raise ValueError(f"editcollapse.editors.memit.editor provides 'memit', not {method!r}")
    return MEMITEditor()
