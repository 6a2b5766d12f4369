"""One forward through the hook layer: truncated after the last site, or full with LM-loss gradients."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.activations import ALL, capture_batch, extract, lm_loss_sum
from interp.hooks import CaptureComplete
from tests.conftest import PROMPTS, no_hooks_left


def test_truncated_forward_equals_full_capture_and_stops_early(tiny: interp.Model):
    sites = ["blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre"]
    batch = tiny.to_tokens(PROMPTS)
    ran = []
    handle = tiny.arch.final_norm().register_forward_hook(lambda *a: ran.append(1))
    try:
        ours, grads = capture_batch(tiny, sites, batch)
    finally:
        handle.remove()
    assert grads is None and not ran  # nothing past block 1's input ran
    _, cache = tiny.run_with_cache(batch, sites=sites)
    for site in sites:
        assert torch.equal(ours[site], cache[site])
    assert no_hooks_left(tiny)


def test_stop_after_capture_is_refused_with_gradients():
    model = interp.load_model("tiny-llama")
    with pytest.raises(interp.InterventionError, match="stop_after_capture"):
        model.hooks(capture=["blocks.0.hook_resid_post"], grad_sites=["blocks.0.hook_resid_post"], stop_after_capture=True)
    with pytest.raises(CaptureComplete):
        with model.hooks(capture=["blocks.0.hook_resid_post"], stop_after_capture=True) as session:
            model.forward(model.to_tokens(PROMPTS[0]), session)
    assert no_hooks_left(model)


def test_lm_loss_gradients_skip_padding(tiny64: interp.Model):
    site = "blocks.1.hook_resid_post"
    batch = tiny64.to_tokens(PROMPTS)
    _, cache = tiny64.run_with_cache(batch, sites=[site], grads=lm_loss_sum(batch))
    cache, batch = cache.to("cpu"), batch.to("cpu")  # where extract returns its vectors
    got = extract(tiny64, PROMPTS, site, ALL, lm_loss_grads=True)
    prompt, position = got.index()
    columns = position + (batch.shape[1] - batch.lengths)[prompt]
    assert torch.equal(got.grads[site], cache.grads[site][prompt, columns])
    assert torch.equal(got[site], cache[site][prompt, columns])
    # a prompt's gradient does not depend on the padding its batch gave it
    alone = extract(tiny64, PROMPTS[2], site, ALL, lm_loss_grads=True)
    assert torch.allclose(alone.grads[site], got.grads[site][prompt == 2], atol=1e-10)
