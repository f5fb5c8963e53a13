"""transformers' own progress bars off while we load: a stage's bar is the one to watch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from transformers.utils import logging as transformers_logging


@contextmanager
def transformers_bars_off() -> Iterator[None]:
    """No "Loading weights" or "Converting and de-quantizing GGUF tensors" bar inside the block;
    the caller's setting is restored after it."""
    bar_was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar_was_on:
            transformers_logging.enable_progress_bar()
