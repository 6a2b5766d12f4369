"""Fixtures of the backend tests: the same weights as our Hugging Face model, a TransformerLens
``TransformerBridge`` and an nnsight ``LanguageModel``.

Each backend gets a deep copy of the reference model's Hugging Face module (booting a bridge rewires
the module it is given; nnsight swaps each module's ``forward``), so the reference stays a plain
Hugging Face model. The bridge needs a tokenizer loaded ``from_pretrained``, so the tiny tokenizer is
saved and reloaded; both wrapped models use the reference model's BOS setting.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import interp

BACKENDS = ("transformer_lens", "nnsight")


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every backend test runs on one torch thread (see ``one_thread``)."""


def boot_bridge(reference: interp.Model) -> Any:
    """A TransformerBridge over a copy of ``reference``'s Hugging Face model, booted offline."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    directory = tempfile.mkdtemp(prefix="interp-bridge-")
    reference.tokenizer.save_pretrained(directory)
    hf_model = copy.deepcopy(reference.hf)
    # a model built from a config has no `architectures`, which the bridge picks its adapter by
    hf_model.config.architectures = hf_model.config.architectures or [type(hf_model).__name__]
    return TransformerBridge.boot_transformers(
        directory, hf_model=hf_model, tokenizer=AutoTokenizer.from_pretrained(directory)
    )


def nnsight_model(reference: interp.Model) -> Any:
    """An nnsight LanguageModel over a copy of ``reference``'s Hugging Face model."""
    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LanguageModel is deprecated in favour of TransformersModel
        return LanguageModel(copy.deepcopy(reference.hf), tokenizer=reference.tokenizer)


def native(reference: interp.Model, backend: str) -> Any:
    """The other library's model over the same weights as ``reference``."""
    return boot_bridge(reference) if backend == "transformer_lens" else nnsight_model(reference)


def wrapped(reference: interp.Model, backend: str) -> tuple[Any, interp.Model]:
    """(the other library's model, the interp model wrapping it)."""
    obj = native(reference, backend)
    return obj, interp.wrap(obj, prepend_bos=reference.prepend_bos)


def hook_state(module: nn.Module) -> list[tuple[str, int, int, int]]:
    """Forward, pre and backward hook counts of every module (what our hooks would leave behind)."""
    return [
        (name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
        for name, m in module.named_modules()
    ]


@pytest.fixture()
def make() -> Callable[[str, str, torch.dtype], tuple[interp.Model, Any, interp.Model]]:
    """``make(name, backend, dtype)`` -> (reference HF model, the library's model, the wrapped model)."""

    def build(name: str, backend: str, dtype: torch.dtype = torch.float32):
        reference = interp.load_model(name, dtype=dtype)
        obj, model = wrapped(reference, backend)
        return reference, obj, model

    return build
