"""MEMIT's hyperparameters (EasyEdit's ``hparams/MEMIT/*.yaml`` keys); files in ``editors/memit/hparams/``."""

from __future__ import annotations

from dataclasses import dataclass

from editcollapse.editors.hparams import HparamsError
from editcollapse.editors.rome.hparams import LocateEditHparams


@dataclass(frozen=True, kw_only=True)
class MultiLayerHparams(LocateEditHparams):
    """ROME's keys for several increasing layers: what every method built on MEMIT's multi-layer edit
    (:func:`~editcollapse.editors.memit.editor.edit_layers`) reads."""

    def validate(self) -> None:
        super().validate()
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise HparamsError(f"{self.method} key 'layers': must be increasing and distinct, got {list(self.layers)}")


@dataclass(frozen=True, kw_only=True)
class MEMITHparams(MultiLayerHparams):
    """The multi-layer keys plus ``mom2_update_weight`` (λ in ``λC + K Kᵀ``)."""

    method = "memit"

    mom2_update_weight: float
