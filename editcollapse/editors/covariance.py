"""Key statistics C = E[k kᵀ]: the uncentered second moment of a module's inputs over a text corpus.

As ROME's ``layer_stats`` (``mom2``): every non-padding token of every sampled text contributes its
key (the input of the rewrite module). Texts are taken in corpus order (the first ``n_samples``),
batched by length, right-padded, truncated to ``max_length`` tokens, and the forward pass stops
right after the module. Sums are accumulated in float64, the result is cast to ``dtype``.

Results are cached on disk under ``cache_dir()/covariance/`` with a key of model id and revision,
module (layer), corpus id, sample count, max length and dtype, so a second call loads in well under
a second. A cache file records its own key; a mismatch is an error, never a silent reuse.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from editcollapse.core.errors import RunRefused
from editcollapse.core.paths import cache_dir
from editcollapse.core.tokens import pad_id_of, pad_right
from editcollapse.models.hooks import StopForward, forward_hook, model_device

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` → ``torch.float32`` (EasyEdit's ``mom2_dtype`` is a string)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"mom2_dtype {dtype!r} not in {sorted(DTYPES)}")
    return DTYPES[dtype]


def corpus_texts(corpus: str) -> list[str]:
    """The texts of a corpus id: a text file (one text per line) or a name for ``english_texts``."""
    path = Path(corpus).expanduser()
    if path.is_file():
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise ValueError(f"{path}: no non-empty lines to compute key statistics from")
        return texts
    from editcollapse.datasets import english_texts

    return english_texts(corpus)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "x"


def cache_key(
    model_id: str, revision: str, module_name: str, corpus_id: str, n_samples: int, max_length: int, dtype: torch.dtype
) -> dict[str, str]:
    """Everything the statistics depend on, as strings."""
    return {
        "model_id": model_id,
        "revision": revision,
        "module": module_name,
        "corpus": corpus_id,
        "n_samples": str(n_samples),
        "max_length": str(max_length),
        "dtype": str(dtype),
    }


def cache_path(key: dict[str, str]) -> Path:
    """The cache file of ``key`` (readable folder/file names plus a digest of the whole key)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir() / "covariance" / _slug(f"{key['model_id']}@{key['revision']}")
    name = f"{_slug(key['module'])}.{_slug(key['corpus'])}.n{key['n_samples']}.{digest}.safetensors"
    return folder / name


@torch.no_grad()
def second_moment(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    module_name: str,
    texts: Sequence[str],
    *,
    batch_tokens: int = 4096,
    max_length: int = 256,
    progress: bool = True,
) -> tuple[torch.Tensor, int]:
    """Σ k kᵀ (float64) over every token of ``texts`` at the input of ``module_name``, and the token count."""
    if not texts:
        raise ValueError("no texts to compute key statistics from")
    module = model.get_submodule(module_name)
    device = model_device(model)
    encoded = [ids[:max_length] for ids in tokenizer(list(texts))["input_ids"]]
    order = sorted(range(len(encoded)), key=lambda index: len(encoded[index]))
    batches: list[list[int]] = [[]]
    for index in order:
        if batches[-1] and len(encoded[index]) * (len(batches[-1]) + 1) > batch_tokens:
            batches.append([])
        batches[-1].append(index)
    total: torch.Tensor | None = None
    count = 0
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, args, _output):
        captured["keys"] = args[0]
        raise StopForward

    with (
        forward_hook(module, hook),
        tqdm(total=len(encoded), desc=f"key statistics {module_name}", unit="text", disable=not progress) as bar,
    ):
        for batch in batches:
            input_ids, attention_mask = pad_right([encoded[index] for index in batch], pad_id_of(tokenizer), device)
            try:
                model(input_ids=input_ids, attention_mask=attention_mask)
            except StopForward:
                pass
            keys = captured.pop("keys")[attention_mask.bool()].double()
            total = keys.T @ keys if total is None else total + keys.T @ keys
            count += keys.shape[0]
            bar.update(len(batch))
    return total, count


def layer_covariance(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    module_name: str,
    *,
    model_id: str,
    revision: str,
    texts: Sequence[str] | None = None,
    corpus_id: str = "embedded",
    n_samples: int = 1000,
    dtype: str | torch.dtype = "float32",
    max_length: int = 256,
    batch_tokens: int = 4096,
    progress: bool = True,
    use_cache: bool = True,
) -> torch.Tensor:
    """C = E[k kᵀ] of the inputs of ``module_name`` over the first ``n_samples`` texts of a corpus.

    ``texts`` given: they are the corpus and ``corpus_id`` must name them for the cache. Otherwise
    ``corpus_id`` is resolved by :func:`corpus_texts` (default: the embedded English texts).
    """
    dtype = resolve_dtype(dtype)
    key = cache_key(model_id, revision, module_name, corpus_id, n_samples, max_length, dtype)
    path = cache_path(key)
    if use_cache and path.is_file():
        return _load(path, key).to(model_device(model))
    corpus = list(texts) if texts is not None else corpus_texts(corpus_id)
    if len(corpus) < n_samples:
        raise ValueError(f"corpus {corpus_id!r} has {len(corpus)} texts, fewer than mom2_n_samples={n_samples}")
    total, count = second_moment(
        model,
        tokenizer,
        module_name,
        corpus[:n_samples],
        batch_tokens=batch_tokens,
        max_length=max_length,
        progress=progress,
    )
    moment = (total / count).to(dtype)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        save_file({"mom2": moment.cpu().contiguous()}, str(temporary), metadata={**key, "tokens": str(count)})
        temporary.replace(path)
    return moment


class CovarianceHparams(Protocol):
    """The hyperparameters :func:`hparams_covariance` reads (ROME's and MEMIT's classes have them)."""

    model_name: str | None
    model_revision: str | None
    mom2_adjustment: bool
    mom2_dataset: str
    mom2_n_samples: int | None
    mom2_dtype: str


def check_ready(hparams: CovarianceHparams) -> None:
    """Refuse a run whose editor needs the key covariance (``mom2_adjustment``) when it is neither
    cached for this model, revision, corpus and sample count nor computable (its corpus is not
    here): otherwise every case of the run would fail on it. No fingerprint: the hparams and the
    model revision decide the covariance."""
    if not hparams.mom2_adjustment:
        return None
    revision = "unknown-revision" if hparams.model_revision is None else hparams.model_revision
    folder = cache_dir() / "covariance" / _slug(f"{hparams.model_name}@{revision}")
    if any(folder.glob(f"*.{_slug(hparams.mom2_dataset)}.n{hparams.mom2_n_samples}.*.safetensors")):
        return None
    try:
        corpus_texts(hparams.mom2_dataset)
    except (OSError, KeyError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunRefused(
            f"the key covariance of {hparams.model_name} on corpus {hparams.mom2_dataset!r} (mom2_adjustment) "
            f"is not cached and cannot be computed here ({reason}) — make the corpus available, or set "
            "mom2_dataset: embedded in the method's hparams file"
        ) from error
    return None


def hparams_covariance(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, module_name: str, hparams: CovarianceHparams
) -> torch.Tensor:
    """:func:`layer_covariance` as a method's hparams ask for it (EasyEdit's ``mom2_*`` keys).

    ``model_name``/``model_revision`` key the cache (:func:`editcollapse.editors.api.hparams_for`
    fills both); ``mom2_dataset`` names the corpus.
    """
    missing = [key for key in ("mom2_n_samples", "model_name") if getattr(hparams, key) is None]
    if missing:
        raise ValueError(f"hparams lack {missing} (needed for the key covariance of {module_name})")
    return layer_covariance(
        model,
        tokenizer,
        module_name,
        model_id=str(hparams.model_name),
        revision="unknown-revision" if hparams.model_revision is None else hparams.model_revision,
        corpus_id=hparams.mom2_dataset,
        n_samples=hparams.mom2_n_samples,
        dtype=hparams.mom2_dtype,
    )


def _load(path: Path, key: dict[str, str]) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        stored = handle.metadata() or {}
    if any(stored.get(name) != value for name, value in key.items()):
        raise ValueError(f"{path}: cached key statistics were made for {stored}, not {key}; delete the file")
    return load_file(str(path))["mom2"]
