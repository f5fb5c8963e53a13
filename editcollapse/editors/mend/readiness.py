"""Whether MEND can edit: a trained network for the model, revision, data and hparams is stored."""

from __future__ import annotations

from editcollapse.core.errors import RunRefused
from editcollapse.editors.mend.hparams import MENDHparams
from editcollapse.editors.mend.store import MENDNotTrained, resolve_network_dir


def check_ready(hparams: MENDHparams) -> None:
    """Refuse a run before its network is trained; the message names the training command."""
    try:
        resolve_network_dir(hparams)
    except MENDNotTrained as error:
        raise RunRefused(str(error)) from error
