"""Tiny random-weight models of every supported family, for fast tests with no downloads.

The tokenizer is byte-level (GPT-2 style byte→unicode alphabet, no merges), so every string is
representable, every word is several tokens (which exercises multi-token targets) and leading
spaces are explicit tokens, as in GPT-2's BPE.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTJConfig,
    GPTNeoXConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

EOS = "<|endoftext|>"
TINY_NAMES = ("tiny-gpt2", "tiny-gptj", "tiny-neox", "tiny-llama")


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A 257-token byte-level tokenizer: 256 byte symbols plus ``<|endoftext|>`` (eos and pad)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    vocab[EOS] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, pad_token=EOS, bos_token=EOS, unk_token=EOS
    )
    return tokenizer


def tiny_config(name: str, vocab_size: int, n_layers: int = 4, hidden: int = 32) -> PretrainedConfig:
    """The config of tiny model ``name`` (one of :data:`TINY_NAMES`)."""
    common = dict(vocab_size=vocab_size, bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    if name == "tiny-gpt2":
        return GPT2Config(n_embd=hidden, n_layer=n_layers, n_head=4, n_positions=256, **common)
    if name == "tiny-gptj":
        return GPTJConfig(n_embd=hidden, n_layer=n_layers, n_head=4, n_positions=256, rotary_dim=4, **common)
    if name == "tiny-neox":
        return GPTNeoXConfig(
            hidden_size=hidden,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            intermediate_size=4 * hidden,
            max_position_embeddings=256,
            **common,
        )
    if name == "tiny-llama":
        return LlamaConfig(
            hidden_size=hidden,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=3 * hidden,
            max_position_embeddings=256,
            tie_word_embeddings=True,
            **common,
        )
    raise ValueError(f"unknown tiny model {name!r}; choose one of {', '.join(TINY_NAMES)}")


def random_model(config: PretrainedConfig, seed: int, dtype: torch.dtype) -> PreTrainedModel:
    """A causal LM of ``config`` with seeded random weights (same seed → same weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def build_tiny(
    name: str, seed: int = 0, dtype: torch.dtype = torch.float32, n_layers: int = 4, hidden: int = 32
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Tiny model ``name`` with random weights and the byte-level tokenizer."""
    tokenizer = byte_level_tokenizer()
    config = tiny_config(name, vocab_size=len(tokenizer), n_layers=n_layers, hidden=hidden)
    return random_model(config, seed, dtype), tokenizer
