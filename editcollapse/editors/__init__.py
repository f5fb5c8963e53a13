"""Editing methods (pure torch): each maps (model, arch map, cases, hparams) to a `Delta`."""

from editcollapse.core.delta import Delta, ParamDelta, WeightBackup

__all__ = ["Delta", "ParamDelta", "WeightBackup"]
