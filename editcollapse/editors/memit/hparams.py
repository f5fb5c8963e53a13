"""MEMIT's hyperparameters (EasyEdit's ``hparams/MEMIT/*.yaml`` keys); files in ``editors/memit/hparams/``."""

from __future__ import annotations

from dataclasses import dataclass

from editcollapse.editors.hparams import HparamsError
from editcollapse.editors.rome.hparams import LocateEditHparams


@dataclass(frozen=True, kw_only=True)
class MEMITHparams(LocateEditHparams):
    """ROME's keys for several increasing layers, plus ``mom2_update_weight`` (λ in ``λC + K Kᵀ``)."""

    method = "memit"

    mom2_update_weight: float

    def validate(self) -> None:
        super().validate()
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise HparamsError(f"memit key 'layers': must be increasing and distinct, got {list(self.layers)}")
