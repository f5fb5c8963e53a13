"""Where and how ROME writes: the one place the one-case editor and the batched engine set an edit up.

A :class:`ROMESite` holds, for one model and one set of ROME hyperparameters, the edited layer, the
rewrite module (MLP output projection) and the MLP whose output v* is optimised at, the context
templates, whether keys are consistent (r-ROME), the hyperparameters' hash, and the key covariance
``C`` factorised once (LU, float64) for the left vectors ``C⁻¹k*/‖C⁻¹k*‖``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.tokens import pad_id_of
from editcollapse.editors.covariance import hparams_covariance
from editcollapse.editors.rome.context_templates import templates_for
from editcollapse.editors.rome.hparams import ROMEHparams
from editcollapse.editors.rome.keys import PLACEHOLDER, Located, encode, fill, locate
from editcollapse.models.archmap import ArchMap
from editcollapse.models.hooks import module_io_at, prefix_cache


@dataclass
class ROMESite:
    """The edited layer, its modules, the context templates and the covariance of one ROME set-up."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    hparams: ROMEHparams
    consistent: bool  # r-ROME: solve for the template-averaged key (see editor.py)
    layer: int
    rewrite_name: str
    mlp_name: str
    templates: tuple[str, ...]
    hparams_hash: str
    _lu: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        hparams: ROMEHparams,
        *,
        consistent_keys: bool = False,
    ) -> ROMESite:
        """The set-up ``hparams`` ask for on ``model`` (module names default to the architecture map's)."""
        layer = hparams.layer
        templates = templates_for(model, tokenizer, hparams)
        return cls(
            model=model,
            tokenizer=tokenizer,
            hparams=hparams,
            consistent=consistent_keys or hparams.enable_random_prefix_keys,
            layer=layer,
            rewrite_name=(hparams.rewrite_module_tmp or arch.rewrite_module_tmp).format(layer),
            mlp_name=(hparams.mlp_module_tmp or arch.mlp_module_tmp).format(layer),
            templates=tuple(templates),
            hparams_hash=hparams.hash(),
        )

    @property
    def rewrite(self) -> nn.Module:
        return self.model.get_submodule(self.rewrite_name)

    @property
    def mlp(self) -> nn.Module:
        return self.model.get_submodule(self.mlp_name)

    def locate(self, case: EditCase) -> list[Located]:
        """``case``'s prompt behind every context template, tokenised, with its lookup token; row 0 is
        the bare prompt (template ``"{}"``). Raises ``ValueError`` when the subject is not found."""
        return [
            locate(self.tokenizer, fill(template, case.prompt), case.subject, self.hparams.fact_token)
            for template in self.templates
        ]

    def template_keys(self, located: Sequence[Sequence[Located]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The rewrite module's input (the key) and output at the lookup token of every text of
        ``located`` (one list per case, one text per template), from forward passes that stop at the
        rewrite module: (cases, templates, d_in) and (cases, templates, d_out).

        Exact under causal attention, with no computation spent on what cannot reach the lookup token:
        each text is cut after it; the tokens of a context template before the prompt run once for
        every case (:func:`~editcollapse.models.hooks.prefix_cache`; a text whose tokens do not begin
        with them runs whole); and texts run in groups of one template and one length, so no padding.
        """
        n_templates = len(self.templates)
        prefixes = [self.prefix_ids(template) for template in range(n_templates)]
        groups: dict[tuple[int, int], list[int]] = {}
        sequences, splits = [], []
        for index, item in enumerate(text for case in located for text in case):
            sequence, prefix = item.ids[: item.position + 1], prefixes[index % n_templates]
            shared = bool(prefix) and len(sequence) > len(prefix) and sequence[: len(prefix)] == prefix
            sequences.append(sequence)
            splits.append(len(prefix) if shared else 0)
            key = (index % n_templates if shared else -1, len(sequence) - splits[-1])
            groups.setdefault(key, []).append(index)
        caches = {
            template: prefix_cache(self.model, prefixes[template], self.rewrite)
            for template, _ in groups
            if template >= 0
        }
        inputs: torch.Tensor | None = None
        outputs: torch.Tensor | None = None
        for (template, length), group in groups.items():
            group_inputs, group_outputs = module_io_at(
                self.model,
                self.rewrite,
                [sequences[index][splits[index] :] for index in group],
                [length - 1] * len(group),
                pad_id_of(self.tokenizer),
                prefix=caches.get(template),
            )
            if inputs is None or outputs is None:
                inputs = group_inputs.new_empty((len(sequences), group_inputs.shape[1]))
                outputs = group_outputs.new_empty((len(sequences), group_outputs.shape[1]))
            rows = torch.tensor(group, device=inputs.device)
            inputs[rows], outputs[rows] = group_inputs, group_outputs
        shape = (len(located), n_templates, -1)
        return inputs.view(shape), outputs.view(shape)  # type: ignore[union-attr]

    def prefix_ids(self, template: int) -> list[int]:
        """The tokens of context template ``template`` before its prompt (none for the bare ``"{}"``)."""
        text = self.templates[template].split(PLACEHOLDER)[0].rstrip()
        return encode(self.tokenizer, text) if text else []

    def solved_key(self, keys: torch.Tensor, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The key ``k`` the update is solved for and the module's output ``W k`` there, from one
        case's (templates, d) keys and outputs: ROME's bare prompt (row 0), or r-ROME's average."""
        if self.consistent:
            return keys.mean(0), outputs.mean(0)
        return keys[0], outputs[0]

    def left_vectors(self, k_stars: torch.Tensor) -> torch.Tensor:
        """``C⁻¹k*/‖C⁻¹k*‖`` for each row of ``k_stars`` (float64 solves; C factorised once per site),
        or ``k*/‖k*‖`` without ``mom2_adjustment``."""
        direction = k_stars.double()
        if self.hparams.mom2_adjustment:
            if self._lu is None:
                covariance = hparams_covariance(self.model, self.tokenizer, self.rewrite_name, self.hparams)
                self._lu = torch.linalg.lu_factor(covariance.double())
            direction = torch.linalg.lu_solve(*self._lu, direction.T).T
        return (direction / direction.norm(dim=1, keepdim=True)).to(k_stars.dtype)
