"""Errors a user causes and fixes: their message is one line that says what to do.

The CLI prints them as ``error: <message>`` with exit code 2 (no traceback); a Prefect flow that
raises one ends Failed with the same message.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of the errors a user fixes (a model that cannot be loaded here, a missing package …),
    besides the ``ValueError``s and ``FileNotFoundError``s of bad input, which the CLI treats alike."""


class RunRefused(ValueError):
    """A run that must not start as asked (another computation under its id, an editor not ready);
    the message names the difference or the missing piece and the command that resolves it."""
