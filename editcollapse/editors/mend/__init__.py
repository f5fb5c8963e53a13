"""MEND (Mitchell et al. 2022): a trained editor network maps a fine-tuning gradient to a low-rank edit.

* :mod:`~editcollapse.editors.mend.network` — the network (normalised, low-rank, identity-initialised
  MLP shared per weight shape, per-matrix scale/shift and edit learning rates);
* :mod:`~editcollapse.editors.mend.core` — gradient factors, the edited forward, the `Delta`;
* :mod:`~editcollapse.editors.mend.train` / :mod:`~editcollapse.stages.mend.run` — training,
  checkpoints, storage (:mod:`~editcollapse.editors.mend.store`), held-out evaluation;
* :class:`MENDEditor` — the :class:`~editcollapse.editors.api.Editor` of ``"mend"``: it loads the
  stored network for the model (``editcollapse mend train`` makes it) and returns the edit as a
  low-rank :class:`~editcollapse.core.delta.Delta` (rank ≤ the edit sequence's token count per
  matrix). Several cases in one call give the sum of their independent edits, each computed on
  the unedited model (MEND's batched edit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta
from editcollapse.editors.mend.core import (
    capture_factors,
    encode_rows,
    factors_to_delta,
    resolve_targets,
    transform_factors,
)
from editcollapse.editors.mend.hparams import MENDHparams
from editcollapse.editors.mend.store import MENDNotTrained, cached_network, read_meta, resolve_network_dir
from editcollapse.models.archmap import ArchMap
from editcollapse.models.hooks import model_device

__all__ = ["MENDEditor", "MENDNotTrained", "editor"]


@dataclass(frozen=True)
class MENDEditor:
    """The :class:`~editcollapse.editors.api.Editor` of ``"mend"``."""

    method: str = "mend"

    def edit(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        cases: list[EditCase],
        hparams: MENDHparams,
    ) -> Delta:
        """The stored network's edit for ``cases`` (raises :class:`MENDNotTrained` naming the train command)."""
        if not cases:
            raise ValueError("MEND needs at least one case")
        folder = resolve_network_dir(hparams)
        device = model_device(model)
        network = cached_network(folder, device)
        targets = resolve_targets(model, hparams.params_for(arch.family))
        if [t.param for t in targets] != network.names:
            raise ValueError(
                f"the MEND network at {folder} edits {network.names}, the hparams name {[t.param for t in targets]}"
            )
        batch = encode_rows(tokenizer, [(case.filled_prompt, case.target_new) for case in cases], device)
        factors, _ = capture_factors(model, targets, batch, list(range(len(cases))))
        with torch.no_grad():
            transformed = transform_factors(network, factors)
        params = factors_to_delta(targets, network, transformed)
        meta = read_meta(folder)
        diagnostics = {
            "network": str(folder),
            "network_data_id": meta.get("data_id"),
            "network_iterations": meta.get("iterations"),
            "edit_lrs": {t.param: float(network.edit_lr(t.param).detach()) for t in targets},
            "tokens": {t.param: int(params[t.param].rank) for t in targets},
        }
        return Delta(
            method=self.method,
            params=params,
            hparams_hash=hparams.hash(),
            case_ids=tuple(case.case_id for case in cases),
            diagnostics=diagnostics,
        )


def editor(method: str) -> MENDEditor:
    """The MEND editor, as :func:`~editcollapse.editors.api.get_editor` asks."""
    if method != "mend":
        raise ValueError(f"editcollapse.editors.mend implements 'mend', not {method!r}")
    return MENDEditor()
