"""The wrapped object is the user's own, not a copy; it keeps working, and none of our hooks stay on it.

Checked after a run, a capture with gradients, a patching sweep, AtP, generation, an exception raised
inside a forward (a bad patch at layer 1, after layer-0 hooks fired) and one raised after it (a
failing metric): the hook dictionaries of every module equal what they were before, the bridge's
own ``run_with_cache``/``run_with_hooks`` and nnsight's traces give the numbers they gave before.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp import Patch
from interp.attribution import atp
from interp.patching import patch_sweep
from interp.tasks import PatchingTask
from tests.backends.conftest import BACKENDS, hook_state
from tests.backends.test_parity import SAME_LENGTH

TEXT = "When Mary and John went to the store, John gave"


def _own_numbers(obj, backend: str, ids: torch.Tensor) -> list[torch.Tensor]:
    """What the user gets from the library's own API: logits and a hooked activation."""
    if backend == "transformer_lens":
        logits, cache = obj.run_with_cache(ids)
        seen = []
        obj.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_pre", lambda value, hook: seen.append(value.clone()))])
        return [logits, cache["blocks.1.hook_resid_pre"], seen[0]]
    blocks = obj.transformer.h if hasattr(obj, "transformer") else obj.model.layers
    with obj.trace(ids):
        hidden = blocks[1].output.save()
        logits = obj.lm_head.output.save()
    return [logits, hidden if isinstance(hidden, torch.Tensor) else hidden[0]]


def _fail(_: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("metric failed")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_the_users_object_keeps_working_and_no_hook_is_left(make, name: str, backend: str) -> None:
    reference, obj, model = make(name, backend)
    module = model.hf
    assert module is (obj.original_model if backend == "transformer_lens" else obj._module)  # not a copy
    ids = reference.to_tokens([TEXT]).input_ids
    before_numbers = _own_numbers(obj, backend, ids)
    before_hooks = hook_state(module)

    model.run(TEXT)
    model.run_with_cache(TEXT, sites=["blocks.1.attn.hook_pattern"], grads=lambda logits: logits[:, -1].sum())
    task = PatchingTask.from_prompts(model, "pairs", *SAME_LENGTH)
    patch_sweep(model, task, "resid_pre")
    atp(model, task, "head_z")
    model.generate(TEXT, max_new_tokens=3, use_cache=backend == "nnsight")
    bad = Patch(site="blocks.1.hook_resid_pre", source=torch.zeros(1, ids.shape[1], model.dims.d_model + 1))
    with pytest.raises(interp.InterventionError):
        model.run(TEXT, [bad])
    with pytest.raises(RuntimeError, match="metric failed"):
        model.run_with_cache(TEXT, sites=["blocks.0.hook_resid_post"], grads=_fail)
    if backend == "transformer_lens":
        with pytest.raises(interp.BackendCapabilityError):
            model.generate(TEXT, max_new_tokens=2)

    assert hook_state(module) == before_hooks
    after_numbers = _own_numbers(obj, backend, ids)
    for before, after in zip(before_numbers, after_numbers, strict=True):
        assert torch.equal(before, after)
    assert not module.training
