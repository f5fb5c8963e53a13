"""MEND's hyperparameters (EasyEdit's key names, ``hparams/TRAINING/MEND/*.yaml``); files in
``editors/mend/hparams/``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from editcollapse.editors.hparams import Hparams, HparamsError, canonical_hash

# keys that say where / for which model a network is used, not how it is trained
NOT_TRAINING_KEYS = ("model_name", "model_revision", "mend_network", "alg_name")
EQUIVALENCE = ("paraphrase", "edit+paraphrase")
AT_LEAST_ONE = ("batch_size", "accumulate_bs", "max_iters", "val_interval", "val_steps", "model_save_pt")


@dataclass(frozen=True, kw_only=True)
class MENDHparams(Hparams):
    """What :mod:`editcollapse.editors.mend` reads from a MEND hparams file.

    Network (Mitchell et al. 2022 §3.1; EasyEdit keys): ``inner_params`` the edited matrices (or
    ``inner_params_by_family``: a list per model family), ``rank`` of each low-rank MLP layer,
    ``n_hidden`` (layers = n_hidden + 1), ``combine`` ([x; δ] through one MLP), ``norm``
    (standardised inputs), ``shared`` (one network per shape); ``mlp_class``/``init`` must be the
    paper's ``IDMLP``/``id``.
    Training: ``lr`` (Adam, network), ``edit_lr`` (initial per-matrix edit lr α), ``lr_lr`` (Adam,
    the α's), ``cedit``/``cloc`` (loss weights), ``batch_size`` edits per iteration (run as one
    batched forward), ``accumulate_bs`` iterations per optimiser step, ``max_iters`` iterations,
    ``grad_clip``, ``val_interval``/``val_steps`` (held-out cases per validation),
    ``early_stop_patience`` (iterations without a better ``loss/total_edit_val``),
    ``model_save_pt`` (checkpoint every N iterations), ``seed``.
    Data (editcollapse): ``train_data`` (``geofacts`` = the embedded default's training split, a
    named source or a file), ``val_data`` (held-out file; default: a split of ``train_data``),
    ``val_fraction``, ``split_seed``, ``equivalence`` (``paraphrase``: the edit loss on the
    paraphrases, as MEND's ZsRE training; ``edit+paraphrase``: on the edit prompt too),
    ``loc_per_case`` (locality prompts per edit).
    Use: ``mend_network`` names a trained network's folder explicitly (default: the store finds it).
    """

    method = "mend"

    rank: int
    inner_params: tuple[str, ...] = ()
    inner_params_by_family: dict[str, tuple[str, ...]] = field(default_factory=dict)
    n_hidden: int = 1
    combine: bool = True
    norm: bool = True
    shared: bool = True
    mlp_class: str = "IDMLP"
    init: str = "id"
    act: str | None = None  # kept for EasyEdit compatibility, unused (IDMLP's activation is ReLU)
    lr: float = 1e-6
    edit_lr: float = 1e-4
    lr_lr: float = 1e-4
    cedit: float = 0.1
    cloc: float = 1.0
    batch_size: int = 1
    accumulate_bs: int = 10
    max_iters: int = 100000
    grad_clip: float = 100.0
    val_interval: int = 1000
    val_steps: int = 500
    early_stop_patience: int = 20000
    model_save_pt: int = 5000
    seed: int = 42
    train_data: str = "geofacts"
    val_data: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    equivalence: str = "paraphrase"
    loc_per_case: int = 1
    mend_network: str | None = None

    def validate(self) -> None:
        if not self.inner_params and not self.inner_params_by_family:
            raise HparamsError("mend: name the edited matrices in inner_params (or inner_params_by_family)")
        if self.mlp_class != "IDMLP" or self.init != "id":
            raise HparamsError("mend: only mlp_class IDMLP with init id (the paper's network) is implemented")
        if self.equivalence not in EQUIVALENCE:
            raise HparamsError(f"mend key 'equivalence': {self.equivalence!r} is not one of {EQUIVALENCE}")
        for key in AT_LEAST_ONE:
            if getattr(self, key) < 1:
                raise HparamsError(f"mend key {key!r}: must be ≥ 1, got {getattr(self, key)}")
        if not 0 < self.val_fraction < 1:
            raise HparamsError(f"mend key 'val_fraction': must be in (0, 1), got {self.val_fraction}")

    def params_for(self, family: str) -> tuple[str, ...]:
        """The edited parameter names for a model of ``family`` (``inner_params``, else the family's list)."""
        if self.inner_params:
            return self.inner_params
        if family not in self.inner_params_by_family:
            raise HparamsError(
                f"MEND hparams name no inner_params for the {family!r} family "
                f"(inner_params_by_family has {sorted(self.inner_params_by_family)})"
            )
        return self.inner_params_by_family[family]

    def training_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the keys that do not change the trained network."""
        return {key: value for key, value in self.to_dict().items() if key not in NOT_TRAINING_KEYS}

    def training_hash(self) -> str:
        """The identity of a trained network's hyperparameters (part of its storage path)."""
        return canonical_hash(self.training_dict())
