"""The adapter capabilities methods build on: norms, MLP activation, unembedding, start-at-block.

Each is checked against the model's own forward pass on every tiny family, in float64.
"""

from __future__ import annotations

import pytest
import torch
from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

import interp
from interp.models.tiny import TINY_MODELS
from interp.sites import site_name
from tests.conftest import PROMPTS


def test_unembed_of_the_last_residual_is_the_models_logits(tiny64: interp.Model) -> None:
    last = site_name("resid_post", tiny64.dims.n_layers - 1)
    logits, cache = tiny64.run_with_cache(PROMPTS, sites=[last])
    with torch.no_grad():
        again = tiny64.arch.unembed(cache[last])
    torch.testing.assert_close(again, logits, rtol=0, atol=1e-12)


def test_norms_compute_the_formula_they_name(tiny64: interp.Model) -> None:
    norms = tiny64.arch.norms()
    assert any(norm.module is tiny64.arch.final_norm() for norm in norms)
    expected_kind = {"gpt2": "layernorm", "gpt_neox": "layernorm"}.get(tiny64.arch.family, "rmsnorm")
    if tiny64.arch.family.startswith("gemma"):
        expected_kind = "rmsnorm_plus_one"
    x = torch.randn(3, 5, tiny64.dims.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(tiny64.device)
    for norm in norms:
        assert norm.kind == expected_kind
        width = norm.module.weight.shape[-1]
        sample = x[..., :width]
        with torch.no_grad():
            out = norm.module(sample)
            if norm.kind == "layernorm":
                centred = sample - sample.mean(-1, keepdim=True)
                scale = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + norm.eps)
                expected = norm.linear_part(sample) * scale + norm.module.bias
            else:
                scale = torch.rsqrt(sample.pow(2).mean(-1, keepdim=True) + norm.eps)
                expected = norm.linear_part(sample) * scale
        # RMSNorms normalise in float32 even in a float64 model, as their forward does
        tolerance = 1e-12 if norm.kind == "layernorm" else 1e-6
        torch.testing.assert_close(out, expected, rtol=tolerance, atol=tolerance)


def test_mlp_activation_is_the_nonlinearity_between_pre_and_post(tiny64: interp.Model) -> None:
    layer = tiny64.dims.n_layers - 1
    captured: list[torch.Tensor] = []
    handle = tiny64.arch.mlp_activation(layer).register_forward_hook(lambda m, a, out: captured.append(out))
    sites = [site_name(kind, layer) for kind in ("mlp_pre", "mlp_post")]
    if tiny64.arch.gated_mlp:
        sites.append(site_name("mlp_pre_linear", layer))
    try:
        _, cache = tiny64.run_with_cache(PROMPTS, sites=sites)
    finally:
        handle.remove()
    (activation,) = captured
    post = activation * cache[sites[2]] if tiny64.arch.gated_mlp else activation
    torch.testing.assert_close(post, cache[sites[1]], rtol=0, atol=0)


class _CountingHook(ModelHook):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def pre_forward(self, module: torch.nn.Module, *args, **kwargs):
        self.calls += 1
        return args, kwargs


@pytest.mark.parametrize("name", TINY_MODELS)
def test_start_at_keeps_the_blocks_and_their_wrappers(name: str) -> None:
    model = interp.load_model(name, dtype=torch.float64)
    batch = model.to_tokens(PROMPTS)
    start = model.dims.n_layers // 2
    entry = site_name("resid_pre", start)
    logits, cache = model.run_with_cache(batch, sites=[entry])
    blocks = model.arch.layers()
    hooks = [_CountingHook() for _ in blocks]
    for block, hook in zip(blocks, hooks, strict=True):
        add_hook_to_module(block, hook)
    originals = list(blocks)
    wrappers = [block.__dict__["forward"] for block in blocks]
    try:
        with torch.no_grad(), model.arch.start_at(start, cache[entry]):
            suffix = model.forward(batch)
        torch.testing.assert_close(suffix, logits, rtol=0, atol=1e-12)
        assert [hook.calls for hook in hooks] == [0] * start + [1] * (len(blocks) - start)
        assert list(model.arch.layers()) == originals
        assert [block.__dict__["forward"] for block in blocks] == wrappers
        with pytest.raises(RuntimeError, match="boom"), model.arch.start_at(start, cache[entry]):
            raise RuntimeError("boom")
        assert list(model.arch.layers()) == originals
    finally:
        for block in blocks:
            remove_hook_from_module(block)


def test_patching_sweep_through_accelerate_wrapped_blocks() -> None:
    """A sweep on blocks carrying accelerate's hooks equals the sweep on the plain model."""
    from interp.patching import patch_sweep
    from interp.tasks import ioi_task

    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, n=4, seed=1)
    plain = patch_sweep(model, task, "resid_pre")
    hooks = [_CountingHook() for _ in model.arch.layers()]
    for block, hook in zip(model.arch.layers(), hooks, strict=True):
        add_hook_to_module(block, hook)
    try:
        wrapped = patch_sweep(model, task, "resid_pre")
        assert all(hook.calls > 0 for hook in hooks)
        assert all("forward" in block.__dict__ for block in model.arch.layers())
    finally:
        for block in model.arch.layers():
            remove_hook_from_module(block)
    torch.testing.assert_close(wrapped.values, plain.values, rtol=0, atol=1e-12)
