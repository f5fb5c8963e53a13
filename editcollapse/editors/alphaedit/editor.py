"""AlphaEdit (Fang et al., ICLR 2025): MEMIT's update projected onto the null space of the preserved keys.

Follows ``AlphaEdit/AlphaEdit_main.py`` of jianghoucheng/AlphaEdit (and EasyEdit's ``alphaedit``):

1. Targets ``z``, keys ``K_l`` and residuals ``R_l`` exactly as MEMIT
   (:func:`~editcollapse.editors.memit.editor.edit_layers`), each layer's update in place before the
   next layer's keys are read.
2. ``P_l = U Uᵀ`` with ``U`` the eigenvectors of the layer's key covariance ``C_l = E[k kᵀ]`` (the
   statistics MEMIT uses) whose eigenvalues are below ``nullspace_threshold``: ``P_l k ≈ 0`` for
   every key the covariance was made of (the knowledge to preserve).
3. ``ΔW_l = R_l K_lᵀ P_l (K_p K_pᵀ P_l + K_l K_lᵀ P_l + L2·I)⁻¹``, with ``K_p`` the keys of the
   earlier edits of a sequence: the reference solves
   ``(P(K Kᵀ + K_p K_pᵀ) + L2·I) X = P K Rᵀ`` and adds ``Xᵀ``.
4. After all layers, the keys of this edit are read again with the whole update in place: the
   reference adds their ``K Kᵀ`` to its cache; here they ride in the Delta's ``carry`` (per weight),
   so a sequence passes the sum of its earlier Deltas as ``earlier`` and the cache is rebuilt exactly
   on resume from the stored Deltas.

The solve is done in a form of rank ``m = B + n_earlier`` (float64) instead of the reference's dense
``d × d`` one: with ``Z = [K, K_p]`` and ``G = Zᵀ P Z``, ``X = P Z (L2·I + G)⁻¹ [I_B; 0] Rᵀ`` solves the
same system (``(PZZᵀ + L2·I) PZ y = PZ (G + L2·I) y``), and shows ``ΔW = R Xᵀ`` lies in ``P``'s range:
``ΔW k₀ = 0`` for every ``k₀`` with ``P k₀ = 0``. The Delta is rank ``B`` per layer (factors ``R`` and ``X``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta
from editcollapse.editors.alphaedit.hparams import AlphaEditHparams
from editcollapse.editors.covariance import hparams_covariance, resolve_dtype
from editcollapse.editors.memit.editor import edit_layers
from editcollapse.models.archmap import ArchMap

MAX_PROJECTIONS = 16  # per-process cache of P, one per (model, layer, covariance, threshold)
_projections: dict[tuple[Any, ...], tuple[torch.Tensor, int]] = {}


def null_space_projection(covariance: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int]:
    """``P = U Uᵀ`` over the eigenvectors of ``covariance`` with eigenvalues below ``threshold`` (float64),
    and their number (the null space's dimension)."""
    values, vectors = torch.linalg.eigh(covariance.double())
    null = vectors[:, values < threshold]
    return null @ null.T, int(null.shape[1])


def projected_update(
    keys: torch.Tensor, residuals: torch.Tensor, projection: torch.Tensor, earlier: torch.Tensor | None, l2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaEdit's update ``ΔW = R Kᵀ P (K_p K_pᵀ P + K Kᵀ P + L2·I)⁻¹`` as factors, in float64.

    ``keys`` (B, d_in), ``residuals`` (B, d_out), ``earlier`` (n, d_in) the keys of earlier edits (None:
    none), ``projection`` (d_in, d_in) ``P``. Returns ``(R, X)`` with ``R`` (d_out, B) and ``X`` (d_in, B),
    ``ΔW = R Xᵀ`` in (out, in) layout (see the module docstring for the low-rank solve).
    """
    if keys.shape[0] != residuals.shape[0]:
        raise ValueError(f"{keys.shape[0]} keys but {residuals.shape[0]} residuals")
    if earlier is not None and earlier.shape[1] != keys.shape[1]:
        raise ValueError(
            f"the earlier edits carry keys of size {earlier.shape[1]}, this layer's keys have {keys.shape[1]}"
        )
    p = projection.to(dtype=torch.float64, device=keys.device)
    rows = keys.double() if earlier is None else torch.cat([keys.double(), earlier.to(keys.device).double()])
    z = rows.T  # (d_in, m): this edit's keys first
    pz = p @ z
    system = z.T @ pz + l2 * torch.eye(z.shape[1], dtype=torch.float64, device=z.device)
    chosen = torch.eye(z.shape[1], keys.shape[0], dtype=torch.float64, device=z.device)  # [I_B; 0]
    return residuals.double().T, pz @ torch.linalg.solve(system, chosen)


def hparams_projection(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, module_name: str, hparams: AlphaEditHparams
) -> tuple[torch.Tensor, int]:
    """:func:`null_space_projection` of the module's key covariance (:func:`hparams_covariance`), kept per
    process in ``mom2_dtype``: a sequence of edits reuses one ``P`` per layer instead of one eigendecomposition
    per edit (the reference computes ``P`` once, too)."""
    key = (
        hparams.model_name,
        hparams.model_revision,
        module_name,
        hparams.mom2_dataset,
        hparams.mom2_n_samples,
        hparams.mom2_dtype,
        hparams.nullspace_threshold,
    )
    if key not in _projections:
        covariance = hparams_covariance(model, tokenizer, module_name, hparams)
        projection, dimension = null_space_projection(covariance, hparams.nullspace_threshold)
        while len(_projections) >= MAX_PROJECTIONS:
            _projections.pop(next(iter(_projections)))
        _projections[key] = (projection.to(resolve_dtype(hparams.mom2_dtype)), dimension)
    return _projections[key]


@dataclass(frozen=True)
class AlphaEditEditor:
    """The :class:`~editcollapse.editors.api.Editor` of ``"alphaedit"``; it reads ``earlier`` edits' keys."""

    method: str = "alphaedit"

    def edit(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        cases: list[EditCase],
        hparams: AlphaEditHparams,
        earlier: Delta | None = None,
    ) -> Delta:
        """One AlphaEdit batch on ``model``, which already carries ``earlier`` (the sum of the Deltas applied
        before it in a sequence, or None): their carried keys are preserved as well."""
        carried = {} if earlier is None else earlier.carry

        def solve(_layer: int, module_name: str, keys: torch.Tensor, residuals: torch.Tensor):
            projection, dimension = hparams_projection(model, tokenizer, module_name, hparams)
            previous = carried.get(f"{module_name}.weight")
            r, adjusted = projected_update(keys, residuals, projection, previous, float(hparams.L2))
            in_null = projection.to(torch.float64) @ keys.double().T
            return (
                r,
                adjusted,
                {
                    "null_dim": dimension,
                    "earlier_keys": 0 if previous is None else int(previous.shape[0]),
                    "key_null_fraction": float(in_null.norm() / keys.double().norm()),
                },
            )

        result = edit_layers(model, tokenizer, arch, cases, hparams, solve, keys_after=True)
        return Delta(
            method=self.method,
            params=result.params,
            hparams_hash=hparams.hash(),
            case_ids=tuple(case.case_id for case in cases),
            diagnostics=result.diagnostics,
            carry={name: keys.detach().cpu() for name, keys in result.keys_after.items()},
        )


def editor(method: str) -> AlphaEditEditor:
    """The AlphaEdit editor (the registry in :mod:`editcollapse.editors.api` calls this)."""
    if method != "alphaedit":
        raise ValueError(f"editcollapse.editors.alphaedit.editor provides 'alphaedit', not {method!r}")
    return AlphaEditEditor()
