"""AlphaEdit's hyperparameters (EasyEdit's ``hparams/AlphaEdit/*.yaml`` keys); files in ``editors/alphaedit/hparams/``."""

from __future__ import annotations

from dataclasses import dataclass

from editcollapse.editors.hparams import HparamsError
from editcollapse.editors.memit.hparams import MultiLayerHparams


@dataclass(frozen=True, kw_only=True)
class AlphaEditHparams(MultiLayerHparams):
    """MEMIT's keys and targets, plus the null-space projection and the update's ridge term.

    ``nullspace_threshold``: eigenvectors of the key covariance ``C = E[k kᵀ]`` whose eigenvalues are
    below it span the preserved keys' null space (an absolute value, as the reference's
    ``S < threshold``). ``L2``: the ridge ``L2·I`` in the update. The reference's ``mom2_update_weight``
    is not read by its AlphaEdit update, so it is no key here.
    """

    method = "alphaedit"

    nullspace_threshold: float
    L2: float

    def validate(self) -> None:
        super().validate()
        if not self.mom2_adjustment:
            raise HparamsError(
                "alphaedit key 'mom2_adjustment': the null-space projection is made from the key covariance — set true"
            )
        if not self.nullspace_threshold > 0:
            raise HparamsError(f"alphaedit key 'nullspace_threshold': must be > 0, got {self.nullspace_threshold}")
        if not self.L2 > 0:
            raise HparamsError(
                f"alphaedit key 'L2': must be > 0 (it keeps the update's system invertible), got {self.L2}"
            )
