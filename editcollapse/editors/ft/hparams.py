"""FT's and FT-L∞'s hyperparameters (EasyEdit's ``hparams/FT/*.yaml`` keys): one class, the two methods
share every key. Files: ``editors/ft/hparams/ft/`` (unconstrained) and ``editors/ft/hparams/ft-l-inf/``
(``norm_constraint`` = the L∞ radius)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from editcollapse.editors.hparams import Hparams, HparamsError

OBJECTIVES = ("prompt_last", "target_new")


@dataclass(frozen=True, kw_only=True)
class FTHparams(Hparams):
    """Adam on ``rewrite_module_tmp`` (default: the architecture map's) at each of ``layers``.

    ``norm_constraint``: the L∞ radius around the original weights (``false``/``null``: none);
    ``batch_size`` 0: all cases in one batch; ``kl_factor`` must be 0 (ROME's FT defines no KL term).
    """

    method = "ft"

    layers: tuple[int, ...]
    num_steps: int
    lr: float
    weight_decay: float = 0
    kl_factor: float = 0
    norm_constraint: float | Literal[False] | None = False
    batch_size: int = 0
    objective_optimization: str = "prompt_last"
    rewrite_module_tmp: str | None = None

    def validate(self) -> None:
        if self.kl_factor != 0:
            raise HparamsError("ft key 'kl_factor': must be 0 (ROME's FT baseline defines no KL term)")
        if self.linf_radius is not None and self.linf_radius <= 0:
            raise HparamsError(f"ft key 'norm_constraint': must be > 0 or false, got {self.norm_constraint}")
        if self.objective_optimization not in OBJECTIVES:
            raise HparamsError(
                f"ft key 'objective_optimization': {self.objective_optimization!r} is not one of {OBJECTIVES}"
            )

    @property
    def linf_radius(self) -> float | None:
        """The L∞ bound as a float, or None when ``norm_constraint`` is false or null."""
        return None if self.norm_constraint is None or self.norm_constraint is False else float(self.norm_constraint)
