"""Forward hooks on a model's modules: register for one block, read a module's input and output, stop early."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from editcollapse.core.tokens import pad_right


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the needed module has run."""


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


@contextmanager
def forward_hook(module: nn.Module, hook) -> Iterator[None]:
    """Register ``hook`` on ``module`` for the ``with`` block only (removed even on errors)."""
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _first_tensor(value) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


@torch.no_grad()
def module_io_at(
    model: nn.Module, module: nn.Module, sequences: Sequence[Sequence[int]], positions: Sequence[int], pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input and output of ``module`` at ``positions[i]`` of ``sequences[i]`` (one batch).

    The forward pass stops right after ``module`` runs. Returns ``(inputs, outputs)`` of shape
    (batch, d_in) and (batch, d_out).
    """
    device = model_device(model)
    input_ids, attention_mask = pad_right(sequences, pad, device)
    rows = torch.arange(len(sequences), device=device)
    index = torch.tensor(list(positions), device=device)
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, args, output):
        captured["input"] = args[0][rows, index].detach().clone()
        captured["output"] = _first_tensor(output)[rows, index].detach().clone()
        raise StopForward

    with forward_hook(module, hook):
        try:
            model(input_ids=input_ids, attention_mask=attention_mask)
        except StopForward:
            pass
    if "input" not in captured:
        raise RuntimeError("the hooked module did not run during the forward pass")
    return captured["input"], captured["output"]
