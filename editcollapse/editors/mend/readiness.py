"""Whether MEND can edit: a trained network for the model, revision, data and hparams is stored."""

from __future__ import annotations

import hashlib
import json

from editcollapse.core.errors import RunRefused
from editcollapse.editors.mend.hparams import MENDHparams
from editcollapse.editors.mend.store import MENDNotTrained, read_meta, resolve_network_dir


def check_ready(hparams: MENDHparams) -> str:
    """Refuse a run before its network is trained (the message names the training command); else
    a fingerprint of the stored network's record (its folder, data, iterations, training time), so
    a run resumed after the network was trained again is refused rather than mixed."""
    try:
        folder = resolve_network_dir(hparams)
    except MENDNotTrained as error:
        raise RunRefused(str(error)) from error
    record = json.dumps({"folder": folder.name, "meta": read_meta(folder)}, sort_keys=True, default=str)
    return hashlib.sha256(record.encode()).hexdigest()[:16]
