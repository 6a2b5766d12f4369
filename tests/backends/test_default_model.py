"""A TransformerBridge over the embedded default model (SmolLM2-135M, float32): the same patching
table, AtP estimates and last-token residual activations as the Hugging Face model (marked slow).

The bridge is the backend with its own attention code; nnsight runs the Hugging Face modules
themselves and is covered on every tiny family."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.attribution import atp
from interp.patching import patch_sweep
from interp.tasks import ioi_task
from tests.backends.conftest import wrapped
from tests.backends.test_parity import _close

pytestmark = pytest.mark.slow


def test_default_model_through_a_transformer_bridge(smollm: interp.Model) -> None:
    _, model = wrapped(smollm, "transformer_lens")
    assert model.arch.unavailable.keys() == {"kv_cache"}
    task = ioi_task(smollm, 2, seed=0)
    layers = [0, 29]
    ours = patch_sweep(smollm, task, "resid_pre", layers=layers)
    theirs = patch_sweep(model, task, "resid_pre", layers=layers)
    _close(ours.values, theirs.values, torch.float32, "patching resid_pre")
    assert ours.values.abs().max() > 0.1
    ours, theirs = atp(smollm, task, "head_z"), atp(model, task, "head_z")
    _close(ours.values, theirs.values, torch.float32, "AtP head_z")
    site = "blocks.20.hook_resid_post"
    prompts = ["The capital of France is", "I think that the weather today"]
    mine = smollm.run_with_cache(prompts, sites=[site], positions=[-1])[1][site]
    yours = model.run_with_cache(prompts, sites=[site], positions=[-1])[1][site]
    _close(mine, yours, torch.float32, f"last-token {site}")
