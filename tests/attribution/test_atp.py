"""AtP and AtP* against exact patching, in float64 on tiny models.

Honest exactness tests need a model that is *linear in the patched activation*. We make one from
each tiny model by removing the nonlinearities downstream of its last block: the final norm (and
Gemma 2's final soft-cap) becomes the identity, so the last block's MLP output, its neurons and the
last residual stream reach the logit difference linearly (on Gemma the last post-MLP norm goes too).
Zeroing the last MLP's down projection (and, on Gemma, dropping the post-attention norm) makes
everything downstream of the last attention pattern linear too, so AtP is exact for z and v and
the QK fix is exact for q and k.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import interp
from interp import Patch
from interp.attribution import SweepRequest, atp, atp_star, false_negative_bound
from interp.attribution.attention import AttentionRecord
from interp.attribution.atp_star import RESIDUAL_KINDS
from interp.attribution.qk import key_effects, query_effects
from interp.attribution.runs import forward
from interp.models.tiny import TINY_MODELS
from interp.patching import SWEEPS, patch_sweep
from interp.sites import site_name
from interp.tasks import get_metric, ioi_task


def linear_tail(model: interp.Model, drop_last_mlp: bool = False) -> interp.Model:
    """Make the metric affine in the last block's outputs (see the module docstring)."""
    final = model.arch.final_norm()
    for parent in model.hf.modules():
        for name, child in list(parent.named_children()):
            if child is final:
                setattr(parent, name, nn.Identity())
    if getattr(model.hf.config, "final_logit_softcapping", None):
        model.hf.config.final_logit_softcapping = None
    last = model.dims.n_layers - 1
    block = model.arch.layers()[last]
    gemma_post_norms = hasattr(block, "post_feedforward_layernorm")
    if gemma_post_norms:
        block.post_feedforward_layernorm = nn.Identity()
    if drop_last_mlp:
        with torch.no_grad():
            for parameter in model.arch.mlp_down(last).parameters():
                parameter.zero_()
        if gemma_post_norms:
            block.post_attention_layernorm = nn.Identity()
    return model



def _max_error(estimate, exact) -> float:
    return float((estimate.values - exact.values).abs().max())


@pytest.mark.parametrize("name", TINY_MODELS)
def test_atp_equals_exact_patching_where_the_model_is_linear(name: str) -> None:
    model = linear_tail(interp.load_model(name, dtype=torch.float64))
    task = ioi_task(model, n=3, seed=1)
    last = model.dims.n_layers - 1
    sweeps = ["mlp_out", "neuron", "resid_post"]
    for direction in ("denoising", "noising"):
        requests = [SweepRequest(s, layers=[last], neurons=[0, 7, 33] if s == "neuron" else None) for s in sweeps]
        estimates = atp(model, task, requests, direction=direction)
        for request in requests:
            sweep = request.sweep
            exact = patch_sweep(model, task, sweep, direction=direction, layers=[last], neurons=request.neurons)
            assert estimates[sweep].axes == exact.axes and estimates[sweep].coords == exact.coords
            assert _max_error(estimates[sweep], exact) < 1e-9, (sweep, direction)
            assert exact_effect_size(exact) > 1e-3


def exact_effect_size(exact) -> float:
    base = exact.corrupt if exact.direction == "denoising" else exact.clean
    return float((exact.values - base.view(-1, *[1] * (exact.values.ndim - 1))).abs().max())


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-gpt2", "tiny-neox"])
def test_attention_nodes_exact_with_linear_downstream(name: str) -> None:
    """z, v (plain AtP) and q, k (QK fix) of the last layer equal exact patching, by position and whole head."""
    model = linear_tail(interp.load_model(name, dtype=torch.float64), drop_last_mlp=True)
    task = ioi_task(model, n=3, seed=2)
    last = model.dims.n_layers - 1
    plain = ["attn_out", "head_z", "head_v_by_pos", "head_pattern"]
    fixed = ["head_q", "head_k", "head_q_by_pos", "head_k_by_pos"]
    for direction in ("denoising", "noising"):
        linear = atp(model, task, [SweepRequest(s, layers=[last]) for s in plain], direction=direction)
        requests = [SweepRequest(s, layers=[last]) for s in fixed]
        star = atp_star(model, task, requests, direction=direction, grad_drop=False)
        for sweep, estimate in {**linear, **star}.items():
            exact = patch_sweep(model, task, sweep, direction=direction, layers=[last])
            assert _max_error(estimate, exact) < 1e-9, (sweep, direction)


def test_qk_fix_recovers_saturated_attention_that_atp_misses() -> None:
    model = linear_tail(interp.load_model("tiny-llama", dtype=torch.float64), drop_last_mlp=True)
    last = model.dims.n_layers - 1
    with torch.no_grad():
        model.arch.attention(last).q_proj.weight.mul_(40.0)
    task = ioi_task(model, n=4, seed=3)
    request = SweepRequest("head_k_by_pos", layers=[last])
    exact = patch_sweep(model, task, "head_k_by_pos", layers=[last])
    fixed = atp_star(model, task, request, grad_drop=False)
    plain = atp(model, task, request)
    assert _max_error(fixed, exact) < 1e-9
    assert _max_error(plain, exact) > 0.3 * exact_effect_size(exact)


def _record(query: torch.Tensor, key: torch.Tensor, allowed: torch.Tensor, softcap: float | None) -> AttentionRecord:
    mask = torch.zeros(allowed.shape, dtype=torch.float64).masked_fill(~allowed, torch.finfo(torch.float64).min)
    return AttentionRecord(query, key, mask, scaling=0.5, softcap=softcap)


def brute_force_keys(base: AttentionRecord, source: AttentionRecord, grad: torch.Tensor) -> torch.Tensor:
    pattern = torch.softmax(base.scores(), dim=-1)
    columns = []
    for position in range(base.key.shape[2]):
        key = base.key.clone()
        key[:, :, position] = source.key[:, :, position]
        columns.append((grad * (torch.softmax(base.scores(key=key), dim=-1) - pattern)).sum(dim=(2, 3)))
    per_head = torch.stack(columns, dim=-1)
    return per_head.unflatten(1, (base.key.shape[1], -1)).sum(dim=2)


@pytest.mark.parametrize("softcap", [None, 5.0])
def test_key_closed_form_matches_recomputed_softmax(softcap: float | None) -> None:
    generator = torch.Generator().manual_seed(0)
    b, heads, kv_heads, t, d = 2, 4, 2, 6, 8
    query = torch.randn(b, heads, t, d, generator=generator, dtype=torch.float64) * 3
    keys = [torch.randn(b, kv_heads, t, d, generator=generator, dtype=torch.float64) * 3 for _ in range(2)]
    keys[1][0, 0, 2] *= 60  # a shift of hundreds: saturating, needs the stable form
    allowed = torch.ones(t, t, dtype=torch.bool).tril().expand(b, 1, t, t).clone()
    allowed[1, :, :, :2] = False  # left padding in the second row
    allowed[1, :, :2, :2] = torch.eye(2, dtype=torch.bool)
    grad = torch.randn(b, heads, t, t, generator=generator, dtype=torch.float64)
    base, source = _record(query, keys[0], allowed, softcap), _record(query, keys[1], allowed, softcap)
    closed = key_effects(base, source, grad, per_position=True)
    torch.testing.assert_close(closed, brute_force_keys(base, source, grad), rtol=1e-10, atol=1e-10)
    whole = key_effects(base, source, grad, per_position=False)
    swapped = torch.softmax(base.scores(key=keys[1]), dim=-1) - torch.softmax(base.scores(), dim=-1)
    torch.testing.assert_close(whole, (grad * swapped).sum(dim=(2, 3)).unflatten(1, (kv_heads, -1)).sum(2))
    per_query = query_effects(base, _record(keys[0].repeat_interleave(2, 1), keys[0], allowed, softcap), grad, True)
    assert per_query.shape == (b, heads, t) and torch.isfinite(per_query).all()


def _reference_grad_drop(model: interp.Model, task, sweep: str, qk: bool) -> torch.Tensor:
    """GradDrop by definition: one full backward per layer with the block's write gradient zeroed."""
    metric = get_metric("logit_diff")
    n_layers = model.dims.n_layers
    kind = SWEEPS[sweep][0]
    targets = [site_name("pattern" if qk else kind, layer) for layer in range(n_layers)]
    writes = [site_name(k, layer) for layer in range(n_layers) for k in ("attn_out", "mlp_out")]
    source = forward(model, task, "clean", metric, targets, record_attention=qk)
    base = forward(model, task, "corrupt", metric, targets, grad_sites=targets + writes, record_attention=qk)
    total = None
    for drop in range(n_layers):
        handles = [base.live[site_name(k, drop)].register_hook(torch.zeros_like) for k in ("attn_out", "mlp_out")]
        grads = base.grads(targets, retain_graph=True)
        for handle in handles:
            handle.remove()
        if kind not in RESIDUAL_KINDS:  # autograd.grad reports a hooked input's gradient before its hook
            grads[targets[drop]] = torch.zeros_like(grads[targets[drop]])
        per_layer = []
        for layer in range(n_layers):
            if qk:
                effects = query_effects if kind == "q" else key_effects
                name = site_name("pattern", layer)
                per_layer.append(effects(base.attention[layer], source.attention[layer], grads[name], False))
            else:
                name = site_name(kind, layer)
                delta = source.acts[name] - base.acts[name]
                per_layer.append((delta * grads[name]).sum(dim=-1))
        term = torch.stack(per_layer, dim=1).abs()
        total = term if total is None else total + term
    divisor = n_layers if kind in RESIDUAL_KINDS else n_layers - 1
    return total / divisor


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox", "tiny-gemma2"])
def test_grad_drop_truncated_backward_equals_definition(name: str) -> None:
    model = interp.load_model(name, dtype=torch.float64)
    task = ioi_task(model, n=3, seed=4)
    results = atp_star(model, task, ["resid_pre", "attn_out", "head_q"], ranking="unsigned")
    for sweep, qk in (("resid_pre", False), ("attn_out", False), ("head_q", True)):
        reference = _reference_grad_drop(model, task, sweep, qk)
        assert results[sweep].scores is not None
        torch.testing.assert_close(results[sweep].scores, reference, rtol=1e-9, atol=1e-10, msg=sweep)
    last = model.dims.n_layers - 1
    plain = atp(model, task, "attn_out")
    torch.testing.assert_close(
        results["attn_out"].scores[:, last], plain.effects()[:, last].abs(), rtol=1e-9, atol=1e-12,
        msg="a last-layer node has no indirect path: its GradDrop score is |AtP|",
    )
    assert 1 < results["resid_pre"].cost.backward_passes < model.dims.n_layers


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-neox-sequential"])
def test_gradients_match_central_differences_in_float64(name: str) -> None:
    """The directional derivative along the patch, d/de m(base + e * delta), two ways.

    (LayerNorm families: the RMSNorm families compute their norms in float32 even in a float64
    model, which would limit a finite difference to float32 precision.)"""
    model = interp.load_model(name, dtype=torch.float64)
    task = ioi_task(model, n=3, seed=5)
    metric = get_metric("logit_diff")
    site = "blocks.1.hook_resid_mid"
    estimate = atp(model, task, SweepRequest("resid_mid", layers=[1])).effects().sum(dim=(1, 2))
    _, clean = model.run_with_cache(task.clean, sites=[site])
    _, corrupt = model.run_with_cache(task.corrupt, sites=[site])
    delta = clean[site] - corrupt[site]
    eps = 1e-5
    values = []
    for sign in (1, -1):
        patch = Patch(site=site, source=corrupt[site] + sign * eps * delta)
        values.append(metric(model.run(task.corrupt, [patch])[:, -1], task))
    derivative = (values[0] - values[1]) / (2 * eps)
    torch.testing.assert_close(estimate, derivative, rtol=1e-7, atol=1e-9)


def test_per_example_values_do_not_depend_on_the_batch() -> None:
    model = interp.load_model("tiny-gpt2", dtype=torch.float64)
    task = ioi_task(model, n=4, seed=6)
    whole = atp(model, task, "head_z_by_pos")
    alone = atp(model, task.subset([2]), "head_z_by_pos")
    width = alone.values.shape[-1]
    torch.testing.assert_close(whole.effects()[2:3, ..., -width:], alone.effects(), rtol=1e-10, atol=1e-12)


def test_every_sweep_lines_up_with_the_exact_sweep() -> None:
    model = interp.load_model("tiny-llama")
    task = ioi_task(model, n=2, seed=7)
    for sweep in SWEEPS:
        by_position = "pos" in sweep or sweep.startswith("resid") or sweep.endswith("_out")
        request = SweepRequest(sweep, layers=[1], positions=[-1, -2] if by_position else None,
                               neurons=[3, 9] if sweep == "neuron" else None)
        exact = patch_sweep(model, task, sweep, layers=[1], positions=request.positions, neurons=request.neurons)
        for estimate in (atp(model, task, request), atp_star(model, task, request, grad_drop=False)):
            assert (estimate.axes, estimate.coords) == (exact.axes, exact.coords)
            assert estimate.values.shape == exact.values.shape
            torch.testing.assert_close(estimate.clean, exact.clean)
            torch.testing.assert_close(estimate.corrupt, exact.corrupt)
            assert estimate.cost.forward_passes == 2 and estimate.cost.backward_passes == 1
            assert estimate.cost.naive_forward_passes == exact.values[0].numel()


def test_false_negative_bound_verifies_top_and_samples_rest() -> None:
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=8)
    result = atp_star(model, task, "attn_out")
    report = false_negative_bound(model, task, result, top_k=5, samples=9, threshold=10.0, buckets=3)
    assert report.verified_top == 5 and report.remaining == result.values[0].numel() - 5
    assert report.sampled == 9 and report.hits == 0
    assert report.bound == pytest.approx(1 - 0.05 ** (1 / 9))
    assert len(report.to_frame()) == 3 and report.forward_passes > 0
    assert report.expected_missed == pytest.approx(report.bound * report.remaining)
