"""Errors a user causes and fixes: their message is one line that says what to do.

The CLI prints them as ``error: <message>`` with exit code 2 (no traceback); a Prefect flow that
raises one ends Failed with the same message.
"""

from __future__ import annotations


class RunRefused(ValueError):
    """A run that must not start as asked (another computation under its id, an editor not ready);
    the message names the difference or the missing piece and the command that resolves it."""
