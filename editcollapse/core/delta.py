"""`Delta`: what an edit changes in a model's weights, as data.

An editor never leaves a model mutated: it returns a Delta. Applying a Delta remembers the
original tensors, so removing it restores every parameter bit for bit (``(W + Δ) − Δ`` is not
exact in floating point; a copy is). Deltas serialise to safetensors, report their norms and
compose (sum) for sequential editing. A Delta may also carry tensors that are no weight change
(``carry``): what an editor hands on to the later edits of a sequence (AlphaEdit: the keys of the
facts it wrote, so that later edits preserve them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a 2-D matrix for matrix norms: 0-D → 1 × 1, 1-D → a column, n-D → (shape[0], −1)."""
    if tensor.ndim == 0:
        return tensor.reshape(1, 1)
    if tensor.ndim == 1:
        return tensor.unsqueeze(1)
    return tensor if tensor.ndim == 2 else tensor.reshape(tensor.shape[0], -1)


@dataclass
class ParamDelta:
    """The change of one parameter: low-rank ``U @ V.T`` or a dense tensor, in the parameter's layout."""

    u: torch.Tensor | None = None  # (rows, r)
    v: torch.Tensor | None = None  # (cols, r)
    dense: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.dense is None) == (self.u is None or self.v is None):
            raise ValueError("a ParamDelta is either dense or low-rank (u and v), not both or neither")
        if self.u is not None and self.v is not None and self.u.shape[1] != self.v.shape[1]:
            raise ValueError(f"rank mismatch: u {tuple(self.u.shape)} vs v {tuple(self.v.shape)}")

    @property
    def rank(self) -> int | None:
        """The rank of a low-rank delta (None for dense)."""
        return None if self.u is None else self.u.shape[1]

    def materialize(self, dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
        """The dense change ΔW."""
        if self.dense is not None:
            tensor = self.dense
        else:
            tensor = self.u @ self.v.T
        return tensor.to(dtype=dtype or tensor.dtype, device=device or tensor.device)

    def __add__(self, other: ParamDelta) -> ParamDelta:
        if self.dense is None and other.dense is None:
            return ParamDelta(
                u=torch.cat([self.u, other.u.to(self.u)], dim=1), v=torch.cat([self.v, other.v.to(self.v)], dim=1)
            )
        base = self.materialize()
        return ParamDelta(dense=base + other.materialize(base.dtype, base.device))

    def norms(self) -> dict[str, float]:
        """Frobenius and spectral (largest singular value) norms of ΔW, computed in float64.

        A dense change of any shape is read as a matrix: a vector (a bias, a norm's scale) as one
        column, so both norms are its Euclidean norm; a scalar as 1 × 1; more than two dimensions
        (a convolution kernel) as (first dimension, the rest).
        """
        if self.dense is not None:
            matrix = as_matrix(self.dense.double())
            fro = torch.linalg.matrix_norm(matrix, ord="fro")
            spectral = torch.linalg.matrix_norm(matrix, ord=2)
        else:
            # ΔW = U Vᵀ = Qu (Ru Rvᵀ) Qvᵀ: the small core has ΔW's singular values.
            _, r_u = torch.linalg.qr(self.u.double())
            _, r_v = torch.linalg.qr(self.v.double())
            core = r_u @ r_v.T
            fro = torch.linalg.matrix_norm(core, ord="fro")
            spectral = torch.linalg.matrix_norm(core, ord=2)
        return {"fro": float(fro), "spectral": float(spectral)}


@dataclass
class Delta:
    """An edit's weight change across parameters, with its provenance.

    ``params`` maps full parameter names (``"model.layers.5.mlp.down_proj.weight"``) to their change.
    ``diagnostics`` holds per-edit numbers that explain the edit (ROME: the denominator ``k·u``,
    ‖right vector‖ …); JSON-able values only. ``carry`` maps a name (AlphaEdit: a parameter's) to
    rows an editor hands on to later edits in a sequence (AlphaEdit: that matrix's input keys, one
    row per case); never applied to the model, concatenated by ``+`` and stored by :meth:`save`.
    """

    method: str
    params: dict[str, ParamDelta]
    hparams_hash: str = ""
    case_ids: tuple[str, ...] = ()
    diagnostics: dict[str, Any] = field(default_factory=dict)
    carry: dict[str, torch.Tensor] = field(default_factory=dict)

    # --- applying -------------------------------------------------------------------------------

    def apply(self, model: nn.Module) -> WeightBackup:
        """Add ΔW to the model's weights in place; the returned backup restores them exactly."""
        backup = WeightBackup(model, list(self.params))
        try:
            with torch.no_grad():
                for name, change in self.params.items():
                    weight = backup.parameters[name]
                    if tuple(weight.shape) != tuple(change.materialize().shape):
                        raise ValueError(
                            f"delta for {name} has shape {tuple(change.materialize().shape)}, "
                            f"the parameter {tuple(weight.shape)}"
                        )
                    weight.add_(change.materialize(weight.dtype, weight.device))
        except BaseException:
            backup.restore()
            raise
        return backup

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """``with delta.applied(model):`` — the edited model inside, the original bit for bit after."""
        backup = self.apply(model)
        try:
            yield model
        finally:
            backup.restore()

    # --- algebra and analysis -------------------------------------------------------------------

    def __add__(self, other: Delta) -> Delta:
        """The cumulative change of two edits (per-parameter sum; low-rank factors concatenate; carried
        rows stack, ``self``'s first)."""
        params = dict(self.params)
        for name, change in other.params.items():
            params[name] = params[name] + change if name in params else change
        carry = dict(self.carry)
        for name, rows in other.carry.items():
            carry[name] = torch.cat([carry[name], rows.to(carry[name])]) if name in carry else rows
        method = self.method if self.method == other.method else f"{self.method}+{other.method}"
        return Delta(
            method=method,
            params=params,
            hparams_hash=self.hparams_hash,
            case_ids=self.case_ids + other.case_ids,
            diagnostics={"composed_of": len(self.case_ids) + len(other.case_ids)},
            carry=carry,
        )

    def norms(self) -> dict[str, dict[str, float]]:
        """Per-parameter Frobenius and spectral norms of ΔW."""
        return {name: change.norms() for name, change in self.params.items()}

    # --- storage --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the delta as one safetensors file (tensors plus JSON metadata)."""
        tensors: dict[str, torch.Tensor] = {}
        kinds: dict[str, str] = {}
        for name, change in self.params.items():
            if change.dense is not None:
                tensors[f"{name}::dense"] = change.dense.detach().cpu().contiguous()
                kinds[name] = "dense"
            else:
                tensors[f"{name}::u"] = change.u.detach().cpu().contiguous()
                tensors[f"{name}::v"] = change.v.detach().cpu().contiguous()
                kinds[name] = "lowrank"
        for name, rows in self.carry.items():
            tensors[f"{name}::carry"] = rows.detach().cpu().contiguous()
        metadata = {
            "method": self.method,
            "hparams_hash": self.hparams_hash,
            "case_ids": json.dumps(list(self.case_ids)),
            "params": json.dumps(kinds),
            "diagnostics": json.dumps(self.diagnostics),
        }
        if self.carry:
            metadata["carry"] = json.dumps(list(self.carry))
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Delta:
        """Read a delta written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "params" not in metadata:
            raise ValueError(f"{path} is not an editcollapse delta (no 'params' metadata)")
        tensors = load_file(str(path), device=str(device))
        params = {}
        for name, kind in json.loads(metadata["params"]).items():
            if kind == "dense":
                params[name] = ParamDelta(dense=tensors[f"{name}::dense"])
            else:
                params[name] = ParamDelta(u=tensors[f"{name}::u"], v=tensors[f"{name}::v"])
        return cls(
            method=metadata["method"],
            params=params,
            hparams_hash=metadata["hparams_hash"],
            case_ids=tuple(json.loads(metadata["case_ids"])),
            diagnostics=json.loads(metadata["diagnostics"]),
            carry={name: tensors[f"{name}::carry"] for name in json.loads(metadata.get("carry", "[]"))},
        )


class WeightBackup:
    """Exact copies of some parameters, to put back after an in-place change (or a crash)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        available = dict(model.named_parameters())
        missing = [name for name in names if name not in available]
        if missing:
            raise KeyError(f"model has no parameter(s) {missing}")
        self.parameters = {name: available[name] for name in names}
        self._saved = {name: param.detach().clone() for name, param in self.parameters.items()}
        self._restored = False

    def restore(self) -> None:
        """Copy the saved tensors back (idempotent)."""
        if self._restored:
            return
        with torch.no_grad():
            for name, param in self.parameters.items():
                param.copy_(self._saved[name])
        self._restored = True
