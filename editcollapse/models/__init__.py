"""Model loading and per-architecture module maps (GPT-2, GPT-J, GPT-NeoX, Llama incl. SmolLM2)."""

from editcollapse.models.archmap import ArchMap, arch_map_for
from editcollapse.models.loading import LoadedModel, ModelNotAvailable, load_model

__all__ = ["ArchMap", "LoadedModel", "ModelNotAvailable", "arch_map_for", "load_model"]
