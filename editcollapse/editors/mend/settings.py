"""MEND's hyperparameters (EasyEdit's key names, ``hparams/TRAINING/MEND/*.yaml``) as one validated record."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from editcollapse.editors.api import hparams_hash

# keys that say where / for which model a network is used, not how it is trained
NOT_TRAINING_KEYS = ("model_name", "model_revision", "mend_network", "alg_name", "device")
EQUIVALENCE = ("paraphrase", "edit+paraphrase")


@dataclass(frozen=True)
class MENDSettings:
    """What :mod:`editcollapse.editors.mend` reads from a MEND hparams file.

    Network (Mitchell et al. 2022 §3.1; EasyEdit keys): ``inner_params`` the edited matrices,
    ``rank`` of each low-rank MLP layer, ``n_hidden`` (layers = n_hidden + 1), ``combine`` ([x; δ]
    through one MLP), ``norm`` (standardised inputs), ``shared`` (one network per shape).
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
    """

    inner_params: tuple[str, ...]
    inner_params_by_family: dict[str, tuple[str, ...]]
    rank: int
    n_hidden: int
    combine: bool
    norm: bool
    shared: bool
    lr: float
    edit_lr: float
    lr_lr: float
    cedit: float
    cloc: float
    batch_size: int
    accumulate_bs: int
    max_iters: int
    grad_clip: float
    val_interval: int
    val_steps: int
    early_stop_patience: int
    model_save_pt: int
    seed: int
    train_data: str
    val_data: str | None
    val_fraction: float
    split_seed: int
    equivalence: str
    loc_per_case: int

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any]) -> MENDSettings:
        missing = [key for key in ("rank",) if key not in hparams]
        if "inner_params" not in hparams and "inner_params_by_family" not in hparams:
            missing.append("inner_params")
        if missing:
            raise ValueError(f"MEND hparams lack {missing} (model {hparams.get('model_name', '?')})")
        if hparams.get("mlp_class", "IDMLP") != "IDMLP" or hparams.get("init", "id") != "id":
            raise ValueError("MEND hparams: only mlp_class IDMLP with init id (the paper's network) is implemented")
        if hparams.get("one_sided") or hparams.get("x_only") or hparams.get("delta_only"):
            raise ValueError("MEND hparams: one-sided variants are not implemented (one_sided/x_only/delta_only)")
        equivalence = hparams.get("equivalence", "paraphrase")
        if equivalence not in EQUIVALENCE:
            raise ValueError(f"MEND hparams: equivalence {equivalence!r} not in {EQUIVALENCE}")
        settings = cls(
            inner_params=tuple(hparams.get("inner_params") or ()),
            inner_params_by_family={
                family: tuple(names) for family, names in (hparams.get("inner_params_by_family") or {}).items()
            },
            rank=int(hparams["rank"]),
            n_hidden=int(hparams.get("n_hidden", 1)),
            combine=bool(hparams.get("combine", True)),
            norm=bool(hparams.get("norm", True)),
            shared=bool(hparams.get("shared", True)),
            lr=float(hparams.get("lr", 1e-6)),
            edit_lr=float(hparams.get("edit_lr", 1e-4)),
            lr_lr=float(hparams.get("lr_lr", 1e-4)),
            cedit=float(hparams.get("cedit", 0.1)),
            cloc=float(hparams.get("cloc", 1.0)),
            batch_size=int(hparams.get("batch_size", 1)),
            accumulate_bs=int(hparams.get("accumulate_bs", 10)),
            max_iters=int(hparams.get("max_iters", 100000)),
            grad_clip=float(hparams.get("grad_clip", 100.0)),
            val_interval=int(hparams.get("val_interval", 1000)),
            val_steps=int(hparams.get("val_steps", 500)),
            early_stop_patience=int(hparams.get("early_stop_patience", 20000)),
            model_save_pt=int(hparams.get("model_save_pt", 5000)),
            seed=int(hparams.get("seed", 42)),
            train_data=str(hparams.get("train_data", "geofacts")),
            val_data=None if hparams.get("val_data") in (None, "") else str(hparams["val_data"]),
            val_fraction=float(hparams.get("val_fraction", 0.2)),
            split_seed=int(hparams.get("split_seed", 0)),
            equivalence=equivalence,
            loc_per_case=int(hparams.get("loc_per_case", 1)),
        )
        for key in ("batch_size", "accumulate_bs", "max_iters", "val_interval", "val_steps", "model_save_pt"):
            if getattr(settings, key) < 1:
                raise ValueError(f"MEND hparams: {key} must be ≥ 1, got {getattr(settings, key)}")
        if not 0 < settings.val_fraction < 1:
            raise ValueError(f"MEND hparams: val_fraction must be in (0, 1), got {settings.val_fraction}")
        return settings

    def params_for(self, family: str) -> tuple[str, ...]:
        """The edited parameter names for a model of ``family`` (``inner_params``, else the family's list)."""
        if self.inner_params:
            return self.inner_params
        if family not in self.inner_params_by_family:
            raise ValueError(
                f"MEND hparams name no inner_params for the {family!r} family "
                f"(inner_params_by_family has {sorted(self.inner_params_by_family)})"
            )
        return self.inner_params_by_family[family]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["inner_params"] = list(self.inner_params)
        return record


def training_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` without the keys that do not change the trained network."""
    return {key: value for key, value in hparams.items() if key not in NOT_TRAINING_KEYS}


def training_hash(hparams: dict[str, Any]) -> str:
    """The identity of a trained network's hyperparameters (part of its storage path)."""
    return hparams_hash(training_hparams(hparams))
