"""One entry point that turns a model name into (model, tokenizer, architecture map)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.errors import UserError
from editcollapse.models.archmap import ArchMap, arch_map_for
from editcollapse.models.embedded import ensure_embedded_cache
from editcollapse.models.quiet import transformers_bars_off
from editcollapse.models.registry import KNOWN_MODELS
from editcollapse.models.tiny import TINY_NAMES, build_tiny

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")


class ModelNotAvailable(UserError, RuntimeError):
    """The named model cannot be loaded here; the message says what to do."""


@dataclass
class LoadedModel:
    """A loaded causal LM with everything the editors and evaluators need."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    arch: ArchMap
    revision: str
    device: torch.device
    dtype: torch.dtype


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _local_revision(folder: Path) -> str:
    """A content identity of a local model folder: its config and the names and sizes of its weights."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for pattern in WEIGHT_PATTERNS:
        for weight in sorted(folder.glob(pattern)):
            digest.update(f"{weight.name}:{weight.stat().st_size}".encode())
    return f"local-{digest.hexdigest()[:16]}"


def _check_local_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise ModelNotAvailable(
            f"{folder} has no config.json — point at a folder made by "
            "`save_pretrained` or downloaded from the HuggingFace hub"
        )
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise ModelNotAvailable(
            f"{folder} has no model weights (*.safetensors or pytorch_model*.bin) — "
            "copy the weight files into it, or pass another folder"
        )


def _from_pretrained(source: str, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer at ``source``, without transformers' "Loading weights" bar: a stage
    loads its model once per shard, and its own progress bar is the one to watch."""
    with transformers_bars_off():
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype), AutoTokenizer.from_pretrained(source)


def _load_from_hub(hub_id: str, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    try:
        model, tokenizer = _from_pretrained(hub_id, dtype)
    except OSError as error:
        raise ModelNotAvailable(
            f"could not load {hub_id!r} from the HuggingFace hub or its local cache ({error}) — "
            f"offline, download it on a connected machine (`hf download {hub_id} --local-dir DIR`), "
            "copy DIR here and pass DIR as the model name"
        ) from error
    revision = getattr(model.config, "_commit_hash", None) or "hub-unknown-revision"
    return model, tokenizer, f"hub-{revision}"


def _hub_id(name: str, path: Path) -> str:
    """The hub id ``name`` stands for (a known model's, or ``name`` itself when it looks like owner/name)."""
    known = KNOWN_MODELS.get(name)
    if known is not None and known.hub_id:
        return known.hub_id
    if "/" in name and not path.exists() and not name.startswith((".", "/", "~")):
        return name
    raise ModelNotAvailable(
        f"unknown model {name!r} — use one of {', '.join(sorted(KNOWN_MODELS))}, "
        "a local model folder, or a HuggingFace hub id (owner/name); `editcollapse models` lists them"
    )


def _resolve(name: str, dtype: torch.dtype, seed: int) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    if name in TINY_NAMES:
        model, tokenizer = build_tiny(name, seed=seed, dtype=dtype)
        return model, tokenizer, f"tiny-seed{seed}"
    if name == EMBEDDED_MODEL:
        folder, revision = ensure_embedded_cache()
        model, tokenizer = _from_pretrained(str(folder), dtype)
        return model, tokenizer, revision
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        _check_local_folder(path)
        model, tokenizer = _from_pretrained(str(path), dtype)
        return model, tokenizer, _local_revision(path)
    return _load_from_hub(_hub_id(name, path), dtype)


def check_model(name: str, *, seed: int = 0) -> str | None:
    """Whether ``name`` loads here, found without loading its weights (a run's preflight): raise
    :class:`ModelNotAvailable` with what to do when it does not; else the revision :func:`load_model`
    will record, or None for a hub model that is not in the local cache (downloaded when loaded)."""
    if name in TINY_NAMES:
        return f"tiny-seed{seed}"
    if name == EMBEDDED_MODEL:
        return ensure_embedded_cache()[1]
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        _check_local_folder(path)
        return _local_revision(path)
    hub_id = _hub_id(name, path)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(hub_id, "config.json")
    if isinstance(cached, str):
        return f"hub-{Path(cached).parent.name}"  # .../snapshots/<commit>/config.json: the commit loaded
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelNotAvailable(
            f"{hub_id!r} is not in the HuggingFace cache and HF_HUB_OFFLINE is set — download it on a "
            f"connected machine (`hf download {hub_id} --local-dir DIR`), copy DIR here and pass DIR as the model"
        )
    return None


def load_model(
    name: str = EMBEDDED_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> LoadedModel:
    """Load ``name`` (a known name, a local folder or a hub id) in eval mode on ``device``.

    ``seed`` seeds torch after loading (and the weights of tiny models), so everything downstream
    that samples is reproducible.
    """
    target = torch.device(device) if device is not None else default_device()
    model, tokenizer, revision = _resolve(name, dtype, seed)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(target).eval()
    torch.manual_seed(seed)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        arch=arch_map_for(model),
        revision=revision,
        device=target,
        dtype=dtype,
    )
