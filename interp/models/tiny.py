"""Tiny random models for fast, offline tests: one per architecture family, seeded.

Each is built from a config (2-3 layers, d_model 64) with ``from_config``: no download, a second to
build, and the same weights for the same seed. They share a small byte-level BPE tokenizer trained
on the fly from a fixed corpus of IOI-style sentences, so names like " Mary" are single tokens and
tests can use realistic prompts. Gemma 2 keeps attention/final-logit soft-capping; GPT-NeoX comes in
a parallel-residual (default, like Pythia) and a sequential variant.
"""

from __future__ import annotations

import functools
import itertools

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

VOCAB = 512
NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah", "Paul", "Kate"]
PLACES = ["store", "park", "school", "garden", "office", "station"]
OBJECTS = ["drink", "book", "ball", "letter", "ring", "bag"]
TEMPLATES = [
    "When {a} and {b} went to the {place}, {b} gave a {obj} to {a}.",
    "Then, {a} and {b} had a long talk at the {place}. {b} handed the {obj} to {a}.",
    "After the lunch, {a} and {b} went to the {place}. {b} gave a {obj} to {a}.",
]


def corpus() -> list[str]:
    """The fixed training text of the tiny tokenizer."""
    lines = []
    for (a, b), place, obj in itertools.product(itertools.permutations(NAMES, 2), PLACES, OBJECTS[:2]):
        lines.extend(t.format(a=a, b=b, place=place, obj=obj) for t in TEMPLATES)
    return lines


@functools.cache
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE with 512 tokens trained on :func:`corpus` (deterministic)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def _common(**extra: object) -> dict[str, object]:
    return {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, **extra}


def tiny_configs() -> dict[str, PretrainedConfig]:
    """Config of every tiny model, by name."""
    llama_like = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128,
    )
    return {
        "tiny-gpt2": GPT2Config(n_embd=64, n_layer=3, n_head=4, n_positions=128, **_common()),
        "tiny-llama": LlamaConfig(**llama_like, **_common()),
        "tiny-qwen2": Qwen2Config(**llama_like, **_common()),
        "tiny-qwen3": Qwen3Config(**llama_like, head_dim=16, **_common()),
        "tiny-gemma2": Gemma2Config(
            **llama_like, head_dim=16, query_pre_attn_scalar=16, sliding_window=8,
            attn_logit_softcapping=50.0, final_logit_softcapping=30.0, **_common(),
        ),
        "tiny-gemma3": Gemma3TextConfig(
            **llama_like, head_dim=16, query_pre_attn_scalar=16, sliding_window=8, **_common(),
        ),
        "tiny-neox": GPTNeoXConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=128, rotary_pct=0.5, use_parallel_residual=True, **_common(),
        ),
        "tiny-neox-sequential": GPTNeoXConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=128, rotary_pct=0.5, use_parallel_residual=False, **_common(),
        ),
    }


TINY_MODELS = tuple(tiny_configs())


def build_tiny(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A tiny random model, initialised from ``seed``.

    The default init of some families (zero-initialised norm offsets, tiny stds) makes every
    activation nearly equal; we re-draw all weights at a std of 0.2 so sites carry real signal.
    """
    config = tiny_configs()[name]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter_name, parameter in sorted(model.named_parameters()):
            if parameter_name.endswith("bias"):
                parameter.normal_(0.0, 0.02, generator=generator)
            elif parameter.ndim == 1:  # norm weights: around 1 (Gemma's are offsets around 0)
                offset = 0.0 if "gemma" in name else 1.0
                parameter.copy_(offset + 0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.normal_(0.0, 0.2, generator=generator)
    return model.to(dtype).eval()
