"""Edit-case loaders (→ `EditCase`), ME-PPL corpora and the embedded default data."""

from editcollapse.datasets.case import EditCase, NeighborhoodPrompt, PortabilityPrompt

__all__ = ["EditCase", "NeighborhoodPrompt", "PortabilityPrompt"]
