"""What each backend cannot do is a clear error naming the capability and the backend; what
TransformerLens's weight processing changes is exactly what its docs say; detection by ``interp.wrap``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import interp
from interp.attribution import RelPRules, atp, atp_star, relp
from interp.errors import BackendCapabilityError, ModelLoadError
from interp.patching import patch_sweep
from interp.tasks import PatchingTask
from tests.backends.conftest import boot_bridge
from tests.backends.test_parity import PROMPTS, SAME_LENGTH, _close


def test_bridge_refuses_what_it_cannot_do_and_runs_relp_where_its_modules_run(make) -> None:
    reference, _, model = make("tiny-llama", "transformer_lens")
    assert model.arch.unavailable.keys() == {"kv_cache"}
    task = PatchingTask.from_prompts(model, "pairs", *SAME_LENGTH)
    with pytest.raises(BackendCapabilityError, match=r"kv_cache is unavailable on a model from the TransformerLens"):
        model.generate(PROMPTS, max_new_tokens=2)
    with pytest.raises(BackendCapabilityError, match=r"attention implementation 'interp_attribution'.*TransformerLens"):
        atp_star(model, task, "head_q")
    with pytest.raises(BackendCapabilityError, match=r"attention implementation .*TransformerLens"):
        relp(model, task, "head_z", rules=RelPRules(attention="cp"))
    # RelP's default rules hook the bridge's Llama norms and activations, which the bridge runs
    _close(relp(reference, task, "head_z").values, relp(model, task, "head_z").values, torch.float32, "RelP")
    gpt2 = make("tiny-gpt2", "transformer_lens")[2]
    assert gpt2.arch.unavailable.keys() == {"kv_cache", "norms"}  # GPT-2's LayerNorms are the bridge's own code
    with pytest.raises(BackendCapabilityError, match=r"norms is unavailable .*TransformerLens"):
        relp(gpt2, PatchingTask.from_prompts(gpt2, "pairs", *SAME_LENGTH), "resid_pre")


def test_bridge_refuses_padding_in_float64_on_rotary_families(make) -> None:
    _, _, model = make("tiny-llama", "transformer_lens", torch.float64)
    with pytest.raises(BackendCapabilityError, match="padded batches is unavailable .*float32"):
        model.run(PROMPTS)
    model.run(SAME_LENGTH[0])  # one length: fine
    gpt2 = make("tiny-gpt2", "transformer_lens", torch.float64)[2]
    assert bool(gpt2.run(PROMPTS).isfinite().all())


def test_nnsight_supports_every_method_with_the_same_numbers(make) -> None:
    reference, _, model = make("tiny-llama", "nnsight", torch.float64)
    assert model.arch.unavailable == {}
    task = PatchingTask.from_prompts(reference, "pairs", *SAME_LENGTH)
    for method in (atp_star, relp):
        ours, theirs = method(reference, task, "head_z"), method(model, task, "head_z")
        _close(ours.values, theirs.values, torch.float64, method.__name__)


def test_engine_takes_the_plain_path_without_start_at(make) -> None:
    """A model that cannot start at a block gets the same table from full forwards, and its cost says so."""
    reference = interp.load_model("tiny-llama", dtype=torch.float64)
    plain = interp.load_model("tiny-llama", dtype=torch.float64)
    plain.arch.unavailable["start_at"] = "a backend without block entry points"
    task = PatchingTask.from_prompts(reference, "pairs", *SAME_LENGTH)
    ours, theirs = patch_sweep(reference, task, "resid_pre"), patch_sweep(plain, task, "resid_pre")
    _close(ours.values, theirs.values, torch.float64, "plain path")
    cells = theirs.values.shape[1] * theirs.values.shape[2]
    assert theirs.cost.forward_passes == cells + 2 and theirs.cost.naive_forward_passes == cells
    assert ours.cost.flops < theirs.cost.flops
    with pytest.raises(BackendCapabilityError, match="start_at is unavailable"):
        with plain.arch.start_at(1, torch.zeros(1)):
            pass


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_transformerlens_processing_changes_only_what_it_should(name: str) -> None:
    """``enable_compatibility_mode()`` rewrites weights in place (folded norms, centred writing
    weights and unembedding, folded value biases). Attention scores and patterns, MLP hidden
    activations, the residual stream up to its mean, logits up to a constant per position, and
    patching tables and AtP estimates of logit differences are unchanged; ``hook_normalized`` (gain
    folded away) is not, nor, on GPT-2, v and z (value biases folded into the output bias)."""
    reference = interp.load_model(name)
    bridge = boot_bridge(reference)
    bridge.enable_compatibility_mode()
    model = interp.wrap(bridge, prepend_bos=reference.prepend_bos)
    batch = reference.to_tokens(PROMPTS)
    real = batch.attention_mask.bool()
    _, ours = reference.run_with_cache(batch, sites=reference.sites)
    _, theirs = model.run_with_cache(batch, sites=model.sites)
    value_biases = name == "tiny-gpt2"
    for site in reference.sites:
        a, b = ours[site], theirs[site]
        if site.endswith("hook_pattern"):
            a, b = a.transpose(1, 2)[real], b.transpose(1, 2)[real]
        else:
            a, b = a[real], b[real]
        kind = reference.site(site).kind
        if kind == "normalized" or (value_biases and kind in ("v", "z")):
            assert float((a - b).abs().max()) > 1e-2, f"{site} should change"
            continue
        if kind in ("embed", "pos_embed", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "logits"):
            a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
        _close(a, b, torch.float32, site, 1e-5)
    task = PatchingTask.from_prompts(reference, "pairs", *SAME_LENGTH)
    for sweep in ("resid_pre", "head_z", "mlp_out"):
        _close(patch_sweep(reference, task, sweep).values, patch_sweep(model, task, sweep).values, torch.float32, sweep)
        _close(atp(reference, task, sweep).values, atp(model, task, sweep).values, torch.float32, f"AtP {sweep}")


def test_wrap_detects_the_kind_of_model(make) -> None:
    reference, bridge, model = make("tiny-gpt2", "transformer_lens")
    assert model.arch.backend.startswith("TransformerLens") and "TransformerLens" in repr(model)
    lm = make("tiny-gpt2", "nnsight")[1]
    assert interp.wrap(lm).arch.backend == "nnsight"
    assert interp.wrap(reference) is reference
    assert interp.wrap(reference.hf, tokenizer=reference.tokenizer).hf is reference.hf
    with pytest.raises(ModelLoadError, match="needs its tokenizer"):
        interp.wrap(reference.hf)
    with pytest.raises(ModelLoadError, match="cannot wrap a str"):
        interp.wrap("gpt2")
    hooked = type("HookedTransformer", (nn.Module,), {"__module__": "transformer_lens.HookedTransformer"})()
    with pytest.raises(ModelLoadError, match="HookedTransformer .*TransformerBridge"):
        interp.wrap(hooked)
    with pytest.raises(ModelLoadError, match="expected a TransformerLens TransformerBridge"):
        interp.Model.from_transformer_lens(reference.hf)
    with pytest.raises(ModelLoadError, match="expected an nnsight"):
        interp.Model.from_nnsight(reference.hf)
