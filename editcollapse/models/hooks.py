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
    model: nn.Module,
    module: nn.Module,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[int],
    pad: int,
    *,
    prefix: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input and output of ``module`` at ``positions[i]`` of ``sequences[i]`` (one batch).

    The forward pass stops right after ``module`` runs. Returns ``(inputs, outputs)`` of shape
    (batch, d_in) and (batch, d_out). With ``prefix`` (per layer, the keys and values of a text of
    batch size 1, as :func:`prefix_cache` returns them) every sequence continues that text: its
    tokens are computed once for all of them; ``positions`` still count within ``sequences``.
    """
    device = model_device(model)
    input_ids, attention_mask = pad_right(sequences, pad, device)
    rows = torch.arange(len(sequences), device=device)
    index = torch.tensor(list(positions), device=device)
    extra = {}
    if prefix is not None:
        from transformers import DynamicCache

        done, (batch, width) = prefix[0][0].shape[-2], input_ids.shape
        shared = [(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1)) for keys, values in prefix]
        extra = {
            "cache": DynamicCache(ddp_cache_data=shared),
            "use_cache": True,
            "position_ids": torch.arange(done, done + width, device=device).expand(batch, -1),
        }
        attention_mask = torch.cat([attention_mask.new_ones((batch, done)), attention_mask], dim=1)
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, args, output):
        captured["input"] = args[0][rows, index].detach().clone()
        captured["output"] = _first_tensor(output)[rows, index].detach().clone()
        raise StopForward

    with forward_hook(module, hook):
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        except StopForward:
            pass
    if "input" not in captured:
        raise RuntimeError("the hooked module did not run during the forward pass")
    return captured["input"], captured["output"]


@torch.no_grad()
def prefix_cache(model: nn.Module, ids: Sequence[int], until: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the keys and values of the text ``ids`` (batch size 1), up to the layer of module
    ``until`` (the pass stops once it has run): a prefix that :func:`module_io_at` continues many
    texts from, when it stops at that module too."""
    from transformers import DynamicCache

    tokens = torch.tensor([list(ids)], device=model_device(model))
    cache = DynamicCache()

    def stop(*_: object) -> None:
        raise StopForward

    with forward_hook(until, stop):
        try:
            model(input_ids=tokens, attention_mask=torch.ones_like(tokens), cache=cache, use_cache=True)
        except StopForward:
            pass
    return [(layer.keys, layer.values) for layer in cache.layers]
