"""The screen: how large a ROME (or r-ROME) update would be, from forward passes alone, without editing.

ROME's update is ``ΔW = r uᵀ`` with ``‖u‖ = 1`` and ``r = (v* − W k) / (k · u)``, so
``‖ΔW‖_F = ‖v* − W k‖ / |k · u|``. The v* optimisation starts at ``init`` (the MLP's output at the
bare prompt's lookup token, which is ``W k`` of the bare prompt: the MLP ends with the rewrite
module) and keeps ``‖v* − init‖ ≤ clamp_norm_factor · ‖init‖``. Hence, with ``o = W k`` at the key
solved for (ROME: the bare prompt, ``o = init``; r-ROME: the template average)::

    ‖ΔW‖_F ≤ risk = (‖init − o‖ + clamp_norm_factor · ‖init‖) / |k · u|

Every term needs only the forward passes up to the rewrite module that the editor itself runs
(:meth:`~editcollapse.editors.rome.site.ROMESite.template_keys`, :meth:`~editcollapse.editors.rome.site.ROMESite.left_vectors`):
the screen computes k, k*, u and ``W k`` with the editor's own code, so its ``denominator`` is the
edit's (within float rounding of the batch shapes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from editcollapse.core.case import EditCase
from editcollapse.editors.rome.editor import key_diagnostics
from editcollapse.editors.rome.keys import Located
from editcollapse.editors.rome.site import ROMESite

SCREEN_METHODS = ("rome", "r-rome")


@dataclass
class ScreenedCase:
    """One case's key side of a ROME update, as the editor would compute it, before any optimisation."""

    case: EditCase
    site: ROMESite
    keys: torch.Tensor  # (templates, d_in): the rewrite module's input behind every template; row 0 bare
    outputs: torch.Tensor  # (templates, d_out): its output there
    u: torch.Tensor  # left vector C⁻¹k*/‖C⁻¹k*‖
    located: list[Located]

    @property
    def k_star(self) -> torch.Tensor:
        return self.keys.mean(0)

    @property
    def init(self) -> torch.Tensor:
        """Where the v* optimisation starts: the output at the bare prompt's lookup token."""
        return self.outputs[0]

    def values(self) -> dict[str, Any]:
        """The screen's numbers (the ``screen`` table's columns): the edit's key diagnostics, ‖init‖,
        ‖init − W k‖ and the risk bound of the module docstring."""
        key, output = self.site.solved_key(self.keys, self.outputs)
        diagnostics = key_diagnostics(self.site.tokenizer, self.keys, key, self.u, self.located[0])
        init_norm = float(self.init.norm())
        gap = float((self.init - output).norm())
        numerator = gap + self.site.hparams.clamp_norm_factor * init_norm
        denominator = abs(diagnostics["denominator"])
        return {
            **diagnostics,
            "layer": self.site.layer,
            "consistent_keys": self.site.consistent,
            "n_templates": len(self.site.templates),
            "v_init_norm": init_norm,
            "output_gap_norm": gap,
            "risk": numerator / denominator if denominator > 0 else math.inf,
        }


def screen_cases(site: ROMESite, cases: Sequence[EditCase]) -> list[ScreenedCase | ValueError]:
    """Each case's :class:`ScreenedCase`, from one forward pass that stops at the rewrite module, or
    the ``ValueError`` that makes the case uneditable as given (its subject is not in its prompt …)."""
    results: list[ScreenedCase | ValueError | None] = [None] * len(cases)
    located: list[tuple[int, list[Located]]] = []
    for index, case in enumerate(cases):
        try:
            located.append((index, site.locate(case)))
        except ValueError as error:
            results[index] = error
    if located:
        keys, outputs = site.template_keys([texts for _, texts in located])
        us = site.left_vectors(keys.mean(1))
        for row, (index, texts) in enumerate(located):
            results[index] = ScreenedCase(
                case=cases[index], site=site, keys=keys[row], outputs=outputs[row], u=us[row], located=texts
            )
    return results  # type: ignore[return-value]
