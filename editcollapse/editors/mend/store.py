"""Where trained MEND networks live and how an editor finds the one for its model.

``<cache>/mend/<model>/<revision>/<data id>/<hparams hash>/`` (``<cache>`` is
:func:`editcollapse.core.paths.cache_dir`) holds

* ``network.safetensors`` — the trained network (best held-out ``loss/total_edit``), with its
  construction arguments in the metadata;
* ``meta.json`` — model, revision, data id, training hparams and their hash, iterations, held-out
  numbers, training time;
* ``checkpoint.pt`` — the full training state (network, optimisers, iteration, history) that a
  killed run resumes from; ``history.json`` and ``loss_curve.png`` once training has finished.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from editcollapse.core.paths import cache_dir
from editcollapse.editors.mend.hparams import MENDHparams
from editcollapse.editors.mend.network import MENDNetwork

NETWORK_FILE = "network.safetensors"
META_FILE = "meta.json"
CHECKPOINT_FILE = "checkpoint.pt"


class MENDNotTrained(FileNotFoundError):
    """No trained MEND network matches the model, revision, data and hparams; the message says how to train one."""


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "--", part.strip("/")) or "_"


def network_dir(model_name: str, revision: str, data_id: str, hparams: MENDHparams) -> Path:
    """The folder of the network trained for ``model_name`` at ``revision`` on ``data_id`` with ``hparams``."""
    return cache_dir() / "mend" / _safe(model_name) / _safe(revision) / _safe(data_id) / hparams.training_hash()


def train_command(model_name: str, data: str | None = None) -> str:
    data_part = "" if data in (None, "geofacts") else f" --dataset {data}"
    return f"editcollapse mend train --model {model_name}{data_part}"


def resolve_network_dir(hparams: MENDHparams) -> Path:
    """The stored network for ``hparams`` (``mend_network`` names a folder explicitly; otherwise
    ``model_name``, ``model_revision``, ``train_data`` and the training hparams locate it)."""
    explicit = hparams.mend_network
    if explicit:
        folder = Path(explicit).expanduser()
        if not (folder / NETWORK_FILE).is_file():
            raise MENDNotTrained(
                f"mend_network {folder} holds no {NETWORK_FILE} — point mend_network at a trained network's folder"
            )
        return folder
    model_name, revision = hparams.model_name, hparams.model_revision
    if not model_name or not revision:
        raise ValueError(
            "MEND hparams need model_name and model_revision (hparams_for(loaded, 'mend') sets "
            "both) or mend_network, to find the trained network"
        )
    data_id = _data_id(hparams)
    folder = network_dir(model_name, revision, data_id, hparams)
    if (folder / NETWORK_FILE).is_file() and (folder / META_FILE).is_file():
        return folder
    if (folder / CHECKPOINT_FILE).is_file():
        raise MENDNotTrained(
            f"the MEND training of {model_name!r} in {folder} has not finished — run it again to "
            f"resume from its checkpoint: `{train_command(model_name, hparams.train_data)}`"
        )
    others = sorted(str(p.parent) for p in (cache_dir() / "mend" / _safe(model_name)).glob(f"*/*/*/{META_FILE}"))
    hint = (
        "; networks trained for this model with other revisions, data or hparams: " + ", ".join(others)
        if others
        else ""
    )
    raise MENDNotTrained(
        f"no trained MEND network for model {model_name!r} (revision {revision}, data {data_id}, hparams "
        f"{hparams.training_hash()}) at {folder} — train it first: `{train_command(model_name, hparams.train_data)}`"
        f"{hint}"
    )


_DATA_IDS: dict[tuple, str] = {}


def _data_id(hparams: MENDHparams) -> str:
    from editcollapse.editors.mend.data import load_mend_data

    key = (hparams.train_data, hparams.val_data, hparams.val_fraction, hparams.split_seed)
    if key not in _DATA_IDS:
        _DATA_IDS[key] = load_mend_data(hparams).data_id
    return _DATA_IDS[key]


def save_network(network: MENDNetwork, path: Path) -> None:
    """The network's state (parameters and normalisation statistics) and description, written atomically."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata={"description": json.dumps(network.describe())})
    os.replace(temporary, path)


def load_network(path: Path, device: str | torch.device = "cpu") -> MENDNetwork:
    """A network written by :func:`save_network`, in eval mode."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "description" not in metadata:
        raise ValueError(f"{path} is not a MEND network (no 'description' metadata)")
    network = MENDNetwork.from_description(json.loads(metadata["description"]))
    network.load_state_dict(load_file(str(path), device="cpu"))
    return network.to(device).eval()


_CACHE: dict[tuple[str, float, str], MENDNetwork] = {}
_LOCK = threading.Lock()


def cached_network(folder: Path, device: torch.device) -> MENDNetwork:
    """:func:`load_network` once per (file, modification time, device) in this process."""
    path = folder / NETWORK_FILE
    key = (str(path.resolve()), path.stat().st_mtime, str(device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_network(path, device)
        return _CACHE[key]


def write_json(path: Path, record: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    os.replace(temporary, path)


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
