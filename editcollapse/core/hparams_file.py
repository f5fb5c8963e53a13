"""A hyperparameters file of one's own, as the stage configs hold it.

A config checks the file when it is made (a wrong path fails before a model loads) and keeps it as
an absolute path, so a worker in another folder finds it. Run ids digest the file's content
(:func:`file_digest`), so an edited file names a new run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def checked_hparams_file(path: str | os.PathLike[str] | None) -> str | None:
    """``path`` as an absolute path (None stays None); one that is not a file is a one-line ValueError."""
    if path is None:
        return None
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(
            f"hparams file {str(path)!r} is not a file (`editcollapse hparams show METHOD MODEL` prints one to start from)"
        )
    return str(file.resolve())


def file_digest(path: str | os.PathLike[str]) -> str:
    """The sha256 of the file's bytes (16 hex characters)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def hparams_file_parameters(path: str | None) -> dict[str, str]:
    """What a run's parameters record of a hyperparameters file: its path and its content's digest;
    nothing without one, so that the run ids of runs without a file stay as they were."""
    return {} if path is None else {"hparams_file": path, "hparams_file_digest": file_digest(path)}
