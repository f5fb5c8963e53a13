"""ROME (Meng et al. 2022) and r-ROME (Gupta et al. 2024): one fact, one rank-one update of one MLP.

The update of the rewrite module (MLP output projection) at layer L is ``ΔW = r uᵀ`` with

* left vector ``u = C⁻¹k* / ‖C⁻¹k*‖`` (C = E[k kᵀ] when ``mom2_adjustment``, else the identity),
  ``k*`` the rewrite module's input at the subject's lookup token, averaged over the context
  templates (``"{}"`` and model-generated prefixes);
* ``v* = init + delta`` from :func:`~editcollapse.editors.rome.target_vector.optimise_target_vector` at
  the MLP's output;
* right vector ``r = (v* − W k) / (k · u)``.

ROME (the reference implementation, kmeng01/rome and EasyEdit) takes ``k`` and ``W k`` (the module's
output, bias included) at the *bare* prompt, not at the averaged key. When the subject opens the
prompt and no BOS token precedes it, the bare key can be far from k*, ``k · u`` gets small and the
update huge: the "disabling edits" of Gupta et al. r-ROME (EasyEdit's ``enable_random_prefix_keys``)
uses the template-averaged key and output instead, consistently with the left vector.

The model is never mutated; the result is a rank-one :class:`Delta` in the parameter's layout, with
diagnostics that explain the size of the update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.core.delta import Delta, ParamDelta
from editcollapse.editors.rome.hparams import ROMEHparams
from editcollapse.editors.rome.keys import Located, has_bos
from editcollapse.editors.rome.site import ROMESite
from editcollapse.editors.rome.target_vector import TargetVector, optimise_target_vector
from editcollapse.models.archmap import ArchMap

METHODS = ("rome", "r-rome")


def rank_one_param_delta(module: nn.Module, u: torch.Tensor, right: torch.Tensor) -> ParamDelta:
    """``ΔW`` mapping key direction ``u`` to ``right``, in the weight's layout.

    ``nn.Linear`` stores (out, in): ΔW = right uᵀ. GPT-2's ``Conv1D`` stores (in, out): ΔW = u rightᵀ.
    """
    if isinstance(module, nn.Linear):
        return ParamDelta(u=right.unsqueeze(1).clone(), v=u.unsqueeze(1).clone())
    if type(module).__name__ == "Conv1D":
        return ParamDelta(u=u.unsqueeze(1).clone(), v=right.unsqueeze(1).clone())
    raise TypeError(f"ROME rewrites nn.Linear or Conv1D modules, not {type(module).__name__}")


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


@dataclass
class ROMEUpdate:
    """Everything one ROME update is made of (the Delta plus what tests and diagnostics need)."""

    param_name: str
    module: nn.Module
    u: torch.Tensor  # left vector (unit norm)
    right: torch.Tensor
    key: torch.Tensor  # the key the update is solved for: bare (ROME) or averaged (r-ROME)
    output: torch.Tensor  # the module's output at that key
    keys: torch.Tensor  # (templates, d_in): keys behind every context template; row 0 is bare
    target: TargetVector
    located: list[Located]
    templates: list[str]
    consistent_keys: bool
    layer: int

    @property
    def k_star(self) -> torch.Tensor:
        """ROME's k*: the key averaged over the context templates."""
        return self.keys.mean(0)

    def param_delta(self) -> ParamDelta:
        """The rank-one change of the weight in its own layout."""
        return rank_one_param_delta(self.module, self.u, self.right)

    def diagnostics(self, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        """The numbers that explain the update's size (JSON-able), for the ``edits`` table."""
        return {
            **key_diagnostics(tokenizer, self.keys, self.key, self.u, self.located[0]),
            "layer": self.layer,
            "consistent_keys": self.consistent_keys,
            "right_norm": float(self.right.norm()),
            "delta_fro": float(self.right.double().norm() * self.u.double().norm()),
            "v_init_norm": float(self.target.init.norm()),
            "v_delta_norm": float(self.target.delta.norm()),
            "target_nll": self.target.nll,
            "target_prob": self.target.target_prob,
            "v_steps": self.target.steps,
            "n_templates": len(self.templates),
        }


def key_diagnostics(
    tokenizer: PreTrainedTokenizerBase, keys: torch.Tensor, key: torch.Tensor, u: torch.Tensor, bare: Located
) -> dict[str, Any]:
    """What the denominator ``k · u`` of one update is made of, known before any optimisation: the
    edit's diagnostics and the screen (:mod:`editcollapse.editors.rome.screen`) share it. ``keys``:
    (templates, d_in), row 0 the bare prompt ``bare``; ``key``: the key solved for; ``u``: the left vector."""
    k_star = keys.mean(0)
    return {
        "denominator": float(torch.dot(key, u)),
        "subject_first_token": bare.subject_span[0],
        "subject_last_token": bare.subject_span[1],
        "lookup_token": bare.position,
        "prompt_tokens": len(bare.ids),
        "bos": has_bos(tokenizer, bare.ids),
        "cos_k_bare_k_star": _cosine(keys[0], k_star),
        "k_bare_norm": float(keys[0].norm()),
        "k_star_norm": float(k_star.norm()),
    }


def compute_rome_update(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    arch: ArchMap,
    case: EditCase,
    hparams: ROMEHparams,
    *,
    consistent_keys: bool = False,
) -> ROMEUpdate:
    """ROME's (or, with ``consistent_keys``, r-ROME's) rank-one update for ``case``; the model is unchanged.

    The layer, modules, templates and covariance come from :class:`~editcollapse.editors.rome.site.ROMESite`,
    as in the batched engine.
    """
    site = ROMESite.build(model, tokenizer, arch, hparams, consistent_keys=consistent_keys)
    rewrite = site.rewrite
    templates = list(site.templates)
    located = site.locate(case)
    case_keys, case_outputs = site.template_keys([located])
    keys, outputs = case_keys[0], case_outputs[0]
    u = site.left_vectors(keys.mean(0, keepdim=True))[0]
    target = optimise_target_vector(
        model, tokenizer, site.mlp_name, case.prompt, case.subject, case.target_new, templates, hparams
    )
    key, output = site.solved_key(keys, outputs)
    right = (target.target - output) / torch.dot(key, u)
    return ROMEUpdate(
        param_name=f"{site.rewrite_name}.weight",
        module=rewrite,
        u=u,
        right=right,
        key=key,
        output=output,
        keys=keys,
        target=target,
        located=located,
        templates=templates,
        consistent_keys=site.consistent,
        layer=site.layer,
    )


@dataclass(frozen=True)
class ROMEEditor:
    """ROME (``"rome"``, the reference) or r-ROME (``"r-rome"``: consistent keys)."""

    method: str = "rome"

    def edit(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        arch: ArchMap,
        cases: list[EditCase],
        hparams: ROMEHparams,
    ) -> Delta:
        """The rank-one Delta of one case (sequential editing composes the Deltas of single edits)."""
        if len(cases) != 1:
            raise ValueError(f"{self.method} edits one case at a time, got {len(cases)} (use MEMIT for batches)")
        update = compute_rome_update(model, tokenizer, arch, cases[0], hparams, consistent_keys=self.method == "r-rome")
        return Delta(
            method=self.method,
            params={update.param_name: update.param_delta()},
            hparams_hash=hparams.hash(),
            case_ids=(cases[0].case_id,),
            diagnostics=update.diagnostics(tokenizer),
        )


def editor(method: str) -> ROMEEditor:
    """The editor for ``"rome"`` or ``"r-rome"`` (the registry in :mod:`editcollapse.editors.api` calls this)."""
    if method not in METHODS:
        raise ValueError(f"editcollapse.editors.rome.editor provides {METHODS}, not {method!r}")
    return ROMEEditor(method=method)
