"""Per-architecture module maps: where the blocks, MLP projections, attention, norm and head live.

Editing methods address modules by name templates (EasyEdit's ``layer_module_tmp``,
``rewrite_module_tmp`` …); one :class:`ArchMap` per family keeps those templates in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ArchMap:
    """Module-name templates of one model family; ``{}`` stands for the layer index."""

    family: str
    n_layers: int
    layer_module_tmp: str
    mlp_module_tmp: str
    attn_module_tmp: str
    mlp_in_module_tmp: str
    rewrite_module_tmp: str
    ln_f_module: str
    lm_head_module: str
    embed_module: str
    # GPT-2's Conv1D stores weights as (in_features, out_features); Linear as (out, in).
    weights_transposed: bool = False

    def name(self, template_field: str, layer: int | None = None) -> str:
        """The module name of ``template_field`` (e.g. ``"rewrite_module_tmp"``) at ``layer``."""
        template = getattr(self, template_field)
        if "{}" in template:
            if layer is None:
                raise ValueError(f"{template_field} needs a layer index")
            if not 0 <= layer < self.n_layers:
                raise ValueError(f"layer {layer} out of range 0..{self.n_layers - 1} for {self.family}")
            return template.format(layer)
        return template

    def module(self, model: nn.Module, template_field: str, layer: int | None = None) -> nn.Module:
        """Resolve ``template_field`` at ``layer`` to the module object inside ``model``."""
        return model.get_submodule(self.name(template_field, layer))

    def rewrite_weight(self, model: nn.Module, layer: int) -> torch.nn.Parameter:
        """The weight that ROME/MEMIT rewrite at ``layer`` (the MLP output projection)."""
        return self.module(model, "rewrite_module_tmp", layer).weight

    def all_module_names(self) -> list[str]:
        """Every module name this map knows, for every layer (used to check a map against a model)."""
        names = [self.ln_f_module, self.lm_head_module, self.embed_module]
        per_layer = ("layer_module_tmp", "mlp_module_tmp", "attn_module_tmp", "mlp_in_module_tmp", "rewrite_module_tmp")
        for layer in range(self.n_layers):
            names.extend(self.name(field, layer) for field in per_layer)
        return names


_TEMPLATES: dict[str, dict[str, object]] = {
    "gpt2": dict(
        layer_module_tmp="transformer.h.{}",
        mlp_module_tmp="transformer.h.{}.mlp",
        attn_module_tmp="transformer.h.{}.attn",
        mlp_in_module_tmp="transformer.h.{}.mlp.c_fc",
        rewrite_module_tmp="transformer.h.{}.mlp.c_proj",
        ln_f_module="transformer.ln_f",
        lm_head_module="lm_head",
        embed_module="transformer.wte",
        weights_transposed=True,
    ),
    "gptj": dict(
        layer_module_tmp="transformer.h.{}",
        mlp_module_tmp="transformer.h.{}.mlp",
        attn_module_tmp="transformer.h.{}.attn",
        mlp_in_module_tmp="transformer.h.{}.mlp.fc_in",
        rewrite_module_tmp="transformer.h.{}.mlp.fc_out",
        ln_f_module="transformer.ln_f",
        lm_head_module="lm_head",
        embed_module="transformer.wte",
    ),
    "gpt_neox": dict(
        layer_module_tmp="gpt_neox.layers.{}",
        mlp_module_tmp="gpt_neox.layers.{}.mlp",
        attn_module_tmp="gpt_neox.layers.{}.attention",
        mlp_in_module_tmp="gpt_neox.layers.{}.mlp.dense_h_to_4h",
        rewrite_module_tmp="gpt_neox.layers.{}.mlp.dense_4h_to_h",
        ln_f_module="gpt_neox.final_layer_norm",
        lm_head_module="lm_head",  # transformers 5 names it lm_head (hub checkpoints: embed_out)
        embed_module="gpt_neox.embed_in",
    ),
    "llama": dict(
        layer_module_tmp="model.layers.{}",
        mlp_module_tmp="model.layers.{}.mlp",
        attn_module_tmp="model.layers.{}.self_attn",
        mlp_in_module_tmp="model.layers.{}.mlp.up_proj",
        rewrite_module_tmp="model.layers.{}.mlp.down_proj",
        ln_f_module="model.norm",
        lm_head_module="lm_head",
        embed_module="model.embed_tokens",
    ),
}

# transformers' ``config.model_type`` → our family name.
_MODEL_TYPES = {
    "gpt2": "gpt2",
    "gptj": "gptj",
    "gpt_neox": "gpt_neox",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
}

FAMILIES = tuple(_TEMPLATES)


def arch_map_for(model: nn.Module) -> ArchMap:
    """The :class:`ArchMap` of a loaded transformers causal LM, from its config."""
    model_type = getattr(model.config, "model_type", None)
    family = _MODEL_TYPES.get(model_type)
    if family is None:
        raise ValueError(f"unsupported architecture {model_type!r}: editcollapse knows {sorted(_MODEL_TYPES)}")
    return ArchMap(family=family, n_layers=model.config.num_hidden_layers, **_TEMPLATES[family])
