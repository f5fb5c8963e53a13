"""Hidden states below an edited layer: computed once, then fed back in while those layers are skipped.

An edit of block ``L`` (ROME's MLP output projection) cannot change what blocks ``0..L-1`` compute,
so their output for a text is the same under every edit. :func:`hidden_below` runs a forward pass up
to block ``L`` and returns its input; inside :func:`skipping_below` the model's own forward pass
(masks, positions, caches, final norm: all of it the model's code) runs blocks ``L..`` only, on a
given input of block ``L``. Blocks below are swapped for pass-throughs for the duration of the
``with`` block and put back afterwards, even on errors. Exact: the skipped blocks' outputs are the
stored tensors themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from editcollapse.models.archmap import ArchMap
from editcollapse.models.hooks import StopForward


def equal_length_groups(lengths: list[int], max_rows: int | None = None) -> list[list[int]]:
    """Indices grouped by exact length (longest first; at most ``max_rows`` per group): batches with
    no padding, so no FLOP is spent on padded positions."""
    by_length: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        by_length.setdefault(length, []).append(index)
    groups = []
    for length in sorted(by_length, reverse=True):
        members = by_length[length]
        step = max_rows or len(members)
        groups.extend(members[start : start + step] for start in range(0, len(members), step))
    return groups


def blocks_of(model: nn.Module, arch: ArchMap) -> nn.ModuleList:
    """The model's list of transformer blocks (the parent of ``arch.layer_module_tmp``)."""
    parent = arch.layer_module_tmp.format(0).rsplit(".", 1)[0]
    blocks = model.get_submodule(parent)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"{parent} is a {type(blocks).__name__}, not the ModuleList of blocks")
    return blocks


def _unwrapped(value: torch.Tensor | tuple) -> torch.Tensor:
    """A block's hidden states whether they came as a tensor or as a pass-through's 1-tuple."""
    return value[0] if isinstance(value, tuple) else value


def _hidden_argument(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    return _unwrapped(args[0] if args else kwargs["hidden_states"])


@torch.no_grad()
def hidden_below(model: nn.Module, arch: ArchMap, layer: int, forward: Callable[[], Any]) -> torch.Tensor:
    """The input of block ``layer`` during ``forward()`` (a call of ``model`` or its base model);
    the pass stops there."""
    captured: dict[str, torch.Tensor] = {}

    def capture(_module, args, kwargs):
        captured["hidden"] = _hidden_argument(args, kwargs).detach()
        raise StopForward

    handle = blocks_of(model, arch)[layer].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        forward()
    except StopForward:
        pass
    finally:
        handle.remove()
    if "hidden" not in captured:
        raise RuntimeError(f"block {layer} did not run during the forward pass")
    return captured["hidden"]


class _PassThrough(nn.Module):
    """Stands in for a skipped block: returns its input as the 1-tuple ``(hidden_states,)``.

    That one format serves both conventions of the models' block loops, which change between
    transformers releases (GPT-J's blocks returned a tuple up to 5.23, a tensor from 5.24): a loop
    that takes ``block(...)[0]`` gets the tensor; a loop that hands the output on as it is gives the
    tuple to the next pass-through or to block ``layer``'s feed hook, and both unwrap it."""

    def forward(self, hidden_states: torch.Tensor | tuple, *args: Any, **kwargs: Any) -> tuple[torch.Tensor]:
        return (_unwrapped(hidden_states),)


@contextmanager
def skipping_below(model: nn.Module, arch: ArchMap, layer: int, hidden: torch.Tensor) -> Iterator[None]:
    """Inside the block, forward passes of ``model`` skip blocks ``0..layer-1`` and give block
    ``layer`` the input ``hidden`` (batch, tokens, width) — the call's own ``input_ids`` still set
    the shapes, masks and positions. The blocks are restored on exit."""
    blocks = blocks_of(model, arch)
    originals = [blocks[index] for index in range(layer)]

    def feed(_module, args, kwargs):
        if tuple(_hidden_argument(args, kwargs).shape) != tuple(hidden.shape):
            raise ValueError(
                f"stored hidden states {tuple(hidden.shape)} do not match the batch "
                f"{tuple(_hidden_argument(args, kwargs).shape)}"
            )
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    handle = blocks[layer].register_forward_pre_hook(feed, with_kwargs=True)
    try:
        for index in range(layer):
            blocks[index] = _PassThrough()
        yield
    finally:
        for index, block in enumerate(originals):
            blocks[index] = block
        handle.remove()
