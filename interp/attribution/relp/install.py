"""Installing RelP's rules on a model for the duration of a call, for every supported family.

Rules are forward hooks registered with ``prepend=True``, so they run before the hook layer's own
hooks on the same module: a site at a norm's output (Gemma's ``hook_attn_out`` is the output of
``post_attention_layernorm``) sees the rule-carrying tensor, and its gradient is the ordinary
gradient from downstream while the rule acts between the module's input and the site. Every handle
is removed when the context exits, exceptions included.

Where each rule goes, per family (the adapters of :mod:`interp.arch` name the modules: ``norms()``,
``mlp_activation(layer)``, ``mlp_down(layer)``):

=====================  =======================================  ==============================
rule                   GPT-2 / GPT-NeoX                         Llama, Qwen2/3, Gemma 2/3
=====================  =======================================  ==============================
LN-rule                every ``nn.LayerNorm``                   every ``*RMSNorm`` (incl. q/k
                                                                norms, Gemma's post norms)
Identity-rule          ``mlp.act``                              ``mlp.act_fn`` (the gate's)
Half-rule              (no gated MLP)                           input of ``down_proj``
attention rule         the ``interp_attribution`` attention (:mod:`interp.attribution.attention`)
=====================  =======================================  ==============================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from interp.arch import Norm
from interp.attribution.relp.rules import RelPRules, half_rule, identity_rule, norm_rule
from interp.model import Model


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else next(iter(kwargs.values()))


def _output_rule(rule: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor | None:
        if not torch.is_grad_enabled():
            return None
        return rule(_first_input(args, kwargs), output)

    return hook


def _norm_rule(norm: Norm) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda x, y: norm_rule(norm, x, y)


def _half_input(module: nn.Module, args: tuple) -> tuple | None:
    if not torch.is_grad_enabled():
        return None
    return (half_rule(args[0]), *args[1:])


@contextmanager
def relp_rules(model: Model, rules: RelPRules) -> Iterator[None]:
    """Install ``rules`` (all but the attention rule, see :func:`interp.attribution.runs.forward`)."""
    handles: list[RemovableHandle] = []
    try:
        if rules.norm:
            for norm in model.arch.norms():
                hook = _output_rule(_norm_rule(norm))
                handles.append(norm.module.register_forward_hook(hook, prepend=True, with_kwargs=True))
        for layer in range(model.dims.n_layers):
            if rules.activation:
                module = model.arch.mlp_activation(layer)
                rule = _output_rule(identity_rule)
                handles.append(module.register_forward_hook(rule, prepend=True, with_kwargs=True))
            if rules.gated_product and model.arch.gated_mlp:
                handles.append(model.arch.mlp_down(layer).register_forward_pre_hook(_half_input, prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
