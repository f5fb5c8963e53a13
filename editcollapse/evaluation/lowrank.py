"""Many rank-one-edited models in one forward pass: each batch row carries its own change of one module.

Row ``b`` of the batch sees the module's weight ``W + out_b in_bᵀ`` (``nn.Linear`` terms: the output
changes by ``(x · in_b) out_b``), through a forward hook — no weight is copied, changed or restored.
A row whose vectors are zero sees the unedited module. For a ROME update ``in`` is the left vector
``u`` and ``out`` the right vector, whatever the weight's layout (``Conv1D`` included).

Float note: the unbatched path adds ``ΔW`` to ``W`` and multiplies once; here ``x Wᵀ`` and
``(x · u) r`` are summed. The two differ by float32 rounding only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from editcollapse.models.hooks import forward_hook


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def row_rank_one(module: nn.Module, ins: torch.Tensor, outs: torch.Tensor) -> Iterator[None]:
    """Row ``b`` of every forward pass inside the block sees ``module`` edited by ``outs[b] ins[b]ᵀ``.

    ``ins``: (rows, d_in), ``outs``: (rows, d_out); the batch must have exactly ``rows`` rows.
    """
    if ins.shape[0] != outs.shape[0]:
        raise ValueError(f"{ins.shape[0]} input vectors for {outs.shape[0]} output vectors")

    def hook(_module, args, output):
        x, y = args[0], _first(output)
        if x.shape[0] != ins.shape[0]:
            raise ValueError(f"batch of {x.shape[0]} rows, {ins.shape[0]} per-row edits")
        scale = torch.einsum("btd,bd->bt", x, ins.to(x.dtype))
        changed = y + scale.unsqueeze(-1) * outs.to(y.dtype).unsqueeze(1)
        return (changed, *output[1:]) if isinstance(output, tuple) else changed

    with forward_hook(module, hook):
        yield
