"""ROME's and r-ROME's hyperparameters (EasyEdit's ``hparams/ROME/*.yaml`` keys), and the locate-then-edit
keys ROME shares with MEMIT (:class:`LocateEditHparams`).

The packaged files are ``editcollapse/editors/rome/hparams/<model>.yaml``; r-ROME reads them too (it
differs from ROME by one switch, set by its editor).
"""

from __future__ import annotations

from dataclasses import dataclass

from editcollapse.editors.hparams import Hparams, HparamsError
from editcollapse.editors.rome.keys import FACT_TOKENS


@dataclass(frozen=True, kw_only=True)
class LocateEditHparams(Hparams):
    """What ROME and MEMIT share: the edited layers and modules, the target-vector optimisation
    (:func:`~editcollapse.editors.rome.target_vector.optimise_target_vector`), the context templates
    (sampled from the model, or ``context_templates`` as given) and the key covariance
    (:func:`~editcollapse.editors.covariance.hparams_covariance`).

    Module templates left out come from the model's architecture map.
    """

    layers: tuple[int, ...]
    fact_token: str  # the lookup token: one of keys.FACT_TOKENS
    v_num_grad_steps: int
    v_lr: float
    v_weight_decay: float
    clamp_norm_factor: float
    kl_factor: float
    mom2_adjustment: bool  # C = E[k kᵀ] in the update (else the identity)
    context_template_length_params: tuple[tuple[int, int], ...]  # (length, n_gen) pairs
    context_template_seed: int = 0
    # context templates given verbatim ("{}" first): no sampling, the two keys above unused
    context_templates: tuple[str, ...] | None = None
    mom2_dataset: str = "embedded"  # an english_texts corpus name or a text file
    mom2_n_samples: int | None = None  # required with mom2_adjustment
    mom2_dtype: str = "float32"
    rewrite_module_tmp: str | None = None
    layer_module_tmp: str | None = None
    mlp_module_tmp: str | None = None
    v_loss_layer: int | None = None  # kept for EasyEdit compatibility, unused (the loss is at the output head)
    attn_module_tmp: str | None = None  # kept for EasyEdit compatibility, unused
    ln_f_module: str | None = None  # kept for EasyEdit compatibility, unused
    lm_head_module: str | None = None  # kept for EasyEdit compatibility, unused

    def validate(self) -> None:
        if self.fact_token not in FACT_TOKENS:
            raise HparamsError(f"{self.method} key 'fact_token': {self.fact_token!r} is not one of {FACT_TOKENS}")
        if self.mom2_adjustment and self.mom2_n_samples is None:
            raise HparamsError(f"{self.method}: mom2_adjustment needs mom2_n_samples (texts for the key covariance)")
        templates = self.context_templates
        if templates is not None and (not templates or templates[0] != "{}"):
            raise HparamsError(f"{self.method} key 'context_templates': the first must be '{{}}' (the bare prompt)")
        for template in templates or ():
            if template.count("{}") != 1:
                raise HparamsError(
                    f"{self.method} key 'context_templates': each must hold '{{}}' (the prompt) once, got {template!r}"
                )


@dataclass(frozen=True, kw_only=True)
class ROMEHparams(LocateEditHparams):
    """ROME / r-ROME: one layer; ``enable_random_prefix_keys`` turns ROME into r-ROME (consistent keys)."""

    method = "rome"

    enable_random_prefix_keys: bool = False

    def validate(self) -> None:
        super().validate()
        if len(self.layers) != 1:
            raise HparamsError(f"rome key 'layers': ROME rewrites one layer, got {list(self.layers)}")

    @property
    def layer(self) -> int:
        """The one edited layer."""
        return self.layers[0]
