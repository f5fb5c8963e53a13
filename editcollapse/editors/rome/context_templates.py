"""ROME's context templates: short texts sampled from the model itself, put in front of the prompt.

As EasyEdit's ``get_context_templates`` for ROME and MEMIT samples them (the scheme of
kmeng01/memit, which the paper's EasyEdit pipeline ran): the bare ``"{}"`` first, then for each
``(length, n_gen)`` in ``length_params`` ``n_gen // 5`` samples from each of the starters "The",
"Therefore", "Because", "I", "You", top-k (k=5) sampling, ``length`` tokens in all (starter
included); braces removed, ``". {}"`` appended. ROME uses ``[[5, 10], [10, 10]]`` (21 templates),
MEMIT ``[[10, 5]]`` (6 templates). The original kmeng01/rome samples otherwise (20 + 20 texts of 5
and 10 tokens continuing ``<|endoftext|>``, a fixed list); ``context_templates`` in the
hyperparameters can give such templates verbatim.

Hyperparameters that list ``context_templates`` get those, verbatim, instead (:func:`templates_for`).

Sampling is seeded, and results are cached per (model object, length params, seed) for the
process: the reference caches its first templates for the whole run too, so that sequential edits
of an already edited model keep the same prefixes.
"""

from __future__ import annotations

import unicodedata
import weakref
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from editcollapse.editors.rome.hparams import LocateEditHparams
from editcollapse.editors.rome.keys import encode
from editcollapse.models.hooks import model_device

STARTERS = ("The", "Therefore", "Because", "I", "You")
TOP_K = 5

_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, list[str]]] = weakref.WeakKeyDictionary()


def _clean(text: str) -> str:
    """The reference's clean-up of a sample: NFKD, paragraph breaks to spaces, no braces."""
    text = unicodedata.normalize("NFKD", text).replace("\n\n", " ")
    return text.replace("{", "").replace("}", "")


@torch.no_grad()
def sample_texts(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, starter: str, n: int, length: int, generator: torch.Generator
) -> list[str]:
    """``n`` top-k samples continuing ``starter`` until ``length`` tokens in all (starter included)."""
    device = model_device(model)
    ids = torch.tensor([encode(tokenizer, starter)] * n, device=device)
    past = None
    step_input = ids
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    eos = tokenizer.eos_token_id
    while ids.shape[1] < length:
        output = model(input_ids=step_input, cache=past, use_cache=True)
        past = output.cache
        probs = torch.softmax(output.logits[:, -1, :].float(), dim=-1)
        top = torch.topk(probs, TOP_K, dim=-1)
        choice = torch.multinomial(top.values / top.values.sum(-1, keepdim=True), 1, generator=generator)
        new = top.indices.gather(1, choice)
        if eos is not None:
            new = torch.where(finished.unsqueeze(1), torch.full_like(new, eos), new)
            finished |= new.squeeze(1) == eos
        ids = torch.cat([ids, new], dim=1)
        step_input = new
    return [_clean(tokenizer.decode(row, skip_special_tokens=True)) for row in ids.tolist()]


def context_templates(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, length_params: Sequence[Sequence[int]], *, seed: int = 0
) -> list[str]:
    """``["{}", "<sample>. {}", …]`` for ``length_params`` (pairs of (length, n_gen))."""
    params = tuple((int(length), int(n_gen)) for length, n_gen in length_params)
    key = (params, seed)
    cached = _CACHE.setdefault(model, {})
    if key not in cached:
        generator = torch.Generator(device=model_device(model)).manual_seed(seed)
        templates = ["{}"]
        for length, n_gen in params:
            for starter in STARTERS:
                if n_gen // len(STARTERS) == 0:
                    continue
                samples = sample_texts(model, tokenizer, starter, n_gen // len(STARTERS), length, generator)
                templates.extend(f"{sample}. {{}}" for sample in samples)
        cached[key] = templates
    return list(cached[key])


def templates_for(model: nn.Module, tokenizer: PreTrainedTokenizerBase, hparams: LocateEditHparams) -> list[str]:
    """The context templates ``hparams`` ask for: their ``context_templates`` as written, else sampled."""
    if hparams.context_templates is not None:
        return list(hparams.context_templates)
    return context_templates(
        model, tokenizer, hparams.context_template_length_params, seed=hparams.context_template_seed
    )
