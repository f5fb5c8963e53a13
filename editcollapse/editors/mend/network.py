"""MEND's editor network (Mitchell et al. 2022, "Fast Model Editing at Scale", §3).

For a linear layer ``out = W x`` and a loss ``L``, the gradient is a sum of rank-1 terms,
``∇W L = Σ_t δ_t x_tᵀ`` with ``x_t`` the layer input and ``δ_t = ∂L/∂out_t`` at token ``t``.
MEND maps each pair ``(x_t, δ_t)`` to a pseudo-pair ``(x̃_t, δ̃_t)`` with a small network and edits
``W ← W − α_l Σ_t δ̃_t x̃_tᵀ`` (α_l a learned per-matrix edit learning rate).

The network (reference: ``algs/mend.py`` and ``nn.py`` of eric-mitchell/mend; this is an
independent implementation):

* inputs are standardised per dimension with running statistics of every ``x`` and ``δ`` seen in
  training (Welford/Chan updates; frozen outside training);
* ``combine``: ``[x; δ]`` is transformed jointly by an MLP of ``n_hidden + 1`` low-rank residual
  layers (``h ← h + relu(U V h + b)``, rank ``rank``, ``U`` initialised to zero so that the
  network starts as the identity), else two separate MLPs;
* ``shared``: one network per weight *shape*, with a learned per-matrix scale and shift of every
  layer's pre-activation (the "mode" of the matrix within its shape class).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class LowRankResidual(nn.Module):
    """``h + relu(scale_m · (U V h + b) + shift_m)``: one layer of MEND's identity-initialised MLP."""

    def __init__(self, dim: int, rank: int, n_modes: int) -> None:
        super().__init__()
        mid = min(rank, dim)
        self.u = nn.Parameter(torch.zeros(dim, mid))
        self.v = nn.Parameter(torch.randn(mid, dim) / dim**0.5)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mode_scale = nn.Parameter(torch.ones(n_modes, dim))
        self.mode_shift = nn.Parameter(torch.zeros(n_modes, dim))

    def forward(self, h: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (h @ self.v.T) @ self.u.T + self.bias
        pre = pre * self.mode_scale[mode] + self.mode_shift[mode]
        return h + pre.clamp(min=0)  # clamp, not relu: a gradient at 0 (as the reference)


class ResidualMLP(nn.Module):
    """``n_hidden + 1`` :class:`LowRankResidual` layers (the identity at initialisation)."""

    def __init__(self, dim: int, rank: int, n_hidden: int, n_modes: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(LowRankResidual(dim, rank, n_modes) for _ in range(n_hidden + 1))

    def forward(self, h: torch.Tensor, mode: int) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h, mode)
        return h


class RunningNorm(nn.Module):
    """Per-dimension mean and standard deviation of every vector seen in training (float64)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Chan et al.'s parallel update with a batch of rows."""
        if batch.shape[0] == 0:
            return
        batch = batch.detach().to(torch.float64)
        n_b = float(batch.shape[0])
        mean_b = batch.mean(0)
        m2_b = ((batch - mean_b) ** 2).sum(0)
        n_a = float(self.count)
        total = n_a + n_b
        shift = mean_b - self.mean
        self.mean += shift * (n_b / total)
        self.m2 += m2_b + shift**2 * (n_a * n_b / total)
        self.count.fill_(total)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if float(self.count) < 2:
            raise RuntimeError("MEND normalisation has seen fewer than 2 vectors: train the network first")
        std = (self.m2 / (self.count - 1)).sqrt()
        return (h - self.mean.to(h.dtype)) / (std.to(h.dtype) + 1e-7)


class GradientTransform(nn.Module):
    """The MEND network of one weight shape: ``(x, δ)`` rows → ``(x̃, δ̃)`` rows."""

    def __init__(
        self, x_dim: int, delta_dim: int, n_modes: int, *, rank: int, n_hidden: int, combine: bool, norm: bool
    ) -> None:
        super().__init__()
        self.x_dim, self.delta_dim, self.combine, self.norm = x_dim, delta_dim, combine, norm
        self.x_norm = RunningNorm(x_dim)
        self.delta_norm = RunningNorm(delta_dim)
        if combine:
            self.mlp = ResidualMLP(x_dim + delta_dim, rank, n_hidden, n_modes)
        else:
            self.x_mlp = ResidualMLP(x_dim, rank, n_hidden, n_modes)
            self.delta_mlp = ResidualMLP(delta_dim, rank, n_hidden, n_modes)

    def forward(self, x: torch.Tensor, delta: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, delta = x.float(), delta.float()
        if self.training:
            self.x_norm.update(x)
            self.delta_norm.update(delta)
        if self.norm:
            x, delta = self.x_norm(x), self.delta_norm(delta)
        if self.combine:
            out = self.mlp(torch.cat([x, delta], dim=-1), mode)
            return out[:, : self.x_dim], out[:, self.x_dim :]
        return self.x_mlp(x, mode), self.delta_mlp(delta, mode)


def shape_key(x_dim: int, delta_dim: int) -> str:
    return f"{x_dim}x{delta_dim}"


class MENDNetwork(nn.Module):
    """Every edited matrix's transform (shared per shape, or one each) and its edit learning rate.

    ``shapes`` maps each edited parameter name to ``(x_dim, delta_dim)``: its module's input and
    output widths. The order of ``shapes`` is the order of ``edit_lrs``.
    """

    def __init__(
        self,
        shapes: dict[str, tuple[int, int]],
        *,
        rank: int,
        n_hidden: int = 1,
        combine: bool = True,
        norm: bool = True,
        shared: bool = True,
        edit_lr: float = 1e-4,
    ) -> None:
        super().__init__()
        self.names = list(shapes)
        self.shapes = {name: (int(a), int(b)) for name, (a, b) in shapes.items()}
        self.config = dict(rank=rank, n_hidden=n_hidden, combine=combine, norm=norm, shared=shared)
        self.route: dict[str, tuple[str, int]] = {}  # parameter → (transform key, mode)
        groups: dict[str, list[str]] = {}
        for name, (x_dim, delta_dim) in self.shapes.items():
            key = shape_key(x_dim, delta_dim) if shared else f"p{len(groups)}"
            groups.setdefault(key, []).append(name)
        for key, members in groups.items():
            for mode, name in enumerate(members):
                self.route[name] = (key, mode)
        self.transforms = nn.ModuleDict(
            {
                key: GradientTransform(
                    *self.shapes[members[0]], len(members), rank=rank, n_hidden=n_hidden, combine=combine, norm=norm
                )
                for key, members in groups.items()
            }
        )
        self.edit_lrs = nn.Parameter(torch.full((len(self.names),), float(edit_lr)))

    def transform(self, name: str, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key, mode = self.route[name]
        return self.transforms[key](x, delta, mode)

    def edit_lr(self, name: str) -> torch.Tensor:
        return self.edit_lrs[self.names.index(name)]

    def network_parameters(self) -> list[nn.Parameter]:
        """The MLP parameters (trained at ``lr``; the edit lrs are trained at ``lr_lr``)."""
        return list(self.transforms.parameters())

    def describe(self) -> dict[str, Any]:
        """JSON-able construction arguments, to rebuild the network from a stored state."""
        return {"shapes": {n: list(s) for n, s in self.shapes.items()}, **self.config}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> MENDNetwork:
        config = {k: v for k, v in description.items() if k != "shapes"}
        return cls({n: tuple(s) for n, s in description["shapes"].items()}, **config)
