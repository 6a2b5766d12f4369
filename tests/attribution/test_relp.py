"""RelP's LRP rules: forward values untouched, local and layer-by-layer conservation, rules off = AtP."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import interp
from interp.attribution import RelPRules, SweepRequest, atp, atp_star, relp, relp_rules
from interp.attribution.attention import attribution_attention
from interp.arch import Norm
from interp.attribution.relp.rules import half_rule, identity_rule, norm_rule
from interp.attribution.runs import forward
from interp.models.tiny import TINY_MODELS
from interp.patching import patch_sweep
from interp.sites import site_name
from interp.tasks import get_metric, ioi_task

RULE_SETS = [RelPRules(), RelPRules.conservative(), RelPRules(attention="attnlrp")]



def no_hooks_left(model: interp.Model) -> bool:
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.hf.modules())


@pytest.mark.parametrize("name", TINY_MODELS)
def test_rules_keep_logits_bitwise_and_leave_no_hooks(name: str) -> None:
    model = interp.load_model(name)
    task = ioi_task(model, n=3, seed=0)
    implementation = model.hf.config._attn_implementation
    with attribution_attention(model, "gradient"):  # the rules' attention is eager: compare eager with eager
        reference = model.run(task.clean)
    for rules in RULE_SETS:
        with relp_rules(model, rules), attribution_attention(model, rules.attention), torch.enable_grad():
            logits = model.forward(task.clean)
        assert torch.equal(logits.detach(), reference), rules
        assert logits.requires_grad
    with pytest.raises(RuntimeError, match="boom"):
        with relp_rules(model, RelPRules()), attribution_attention(model, "cp"):
            raise RuntimeError("boom")
    assert no_hooks_left(model)
    assert model.hf.config._attn_implementation == implementation


@pytest.mark.parametrize("name", TINY_MODELS)
def test_relp_with_every_rule_off_is_atp(name: str) -> None:
    model = interp.load_model(name, dtype=torch.float64)
    task = ioi_task(model, n=3, seed=1)
    sweeps = ["resid_pre", "attn_out", "head_q_by_pos", "neuron"]
    plain, off = atp(model, task, sweeps), relp(model, task, sweeps, rules=RelPRules.none())
    assert RelPRules.none().is_identity
    for sweep in sweeps:
        # the same float64 arithmetic; not bitwise, because a BLAS under load may split a product
        # over fewer threads and sum in another order (this failed once, under heavy load, as torch.equal)
        torch.testing.assert_close(off[sweep].values, plain[sweep].values, rtol=1e-12, atol=1e-12, msg=sweep)
    rules_on = relp(model, task, "mlp_out")
    assert rules_on.method == "relp" and rules_on.meta["rules"]["norm"]
    assert not torch.equal(rules_on.values, plain["resid_pre"].values)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3", "tiny-gemma3"])
def test_relevance_is_conserved_layer_by_layer(name: str) -> None:
    """Bias-free RMSNorm families with CP attention: sum(x * r) equals the metric at every layer."""
    model = interp.load_model(name, dtype=torch.float64)
    task = ioi_task(model, n=3, seed=2)
    rules = RelPRules.conservative()
    n_layers = model.dims.n_layers
    sites = ["hook_embed"] + [site_name("resid_pre", layer) for layer in range(n_layers)]
    sites += [site_name("resid_mid", layer) for layer in range(n_layers)] + [site_name("resid_post", n_layers - 1)]
    run = forward(model, task, "corrupt", get_metric("logit_diff"), sites, grad_sites=sites,
                  rules=functools.partial(relp_rules, rules=rules), attention_rule=rules.attention)
    coefficients = run.grads(sites)
    for site in sites:
        relevance = (run.acts[site] * coefficients[site]).sum(dim=(1, 2))
        # the norms compute in float32 inside a float64 model, hence 1e-6
        torch.testing.assert_close(relevance, run.metric.detach(), rtol=1e-6, atol=1e-6, msg=site)


def test_local_rules_conserve_relevance_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, dtype=torch.float64, generator=generator)
    x[0, 0] = 0.0
    upstream = torch.randn(4, 16, dtype=torch.float64, generator=generator)
    for act in (nn.functional.silu, nn.functional.gelu, torch.relu):
        leaf = x.clone().requires_grad_(True)
        y = identity_rule(leaf, act(leaf))
        assert torch.equal(y, act(x))
        (grad,) = torch.autograd.grad(y, leaf, upstream)
        torch.testing.assert_close(x * grad, act(x) * upstream, rtol=1e-12, atol=1e-15)
    leaf = x.clone().requires_grad_(True)
    (relu_grad,) = torch.autograd.grad(identity_rule(leaf, torch.relu(leaf)), leaf, upstream)
    (ordinary,) = torch.autograd.grad(torch.relu(leaf), leaf, upstream)
    assert torch.equal(relu_grad[x != 0], ordinary[x != 0])

    gate, up = (t.clone().requires_grad_(True) for t in torch.randn(2, 4, 16, dtype=torch.float64, generator=generator))
    product = half_rule(gate * up)
    grad_gate, grad_up = torch.autograd.grad(product, (gate, up), upstream)
    relevance = (product * upstream).detach()
    torch.testing.assert_close(gate.detach() * grad_gate, relevance / 2)
    torch.testing.assert_close(up.detach() * grad_up, relevance / 2)

    norm = nn.LayerNorm(16, dtype=torch.float64)
    with torch.no_grad():
        norm.weight.normal_(generator=generator)
        norm.bias.normal_(generator=generator)
    leaf = x.clone().requires_grad_(True)
    out = norm_rule(Norm(norm, "layernorm", norm.eps), leaf, norm(leaf))
    (grad,) = torch.autograd.grad(out, leaf, upstream)
    weight_part = ((out - norm.bias) * upstream).sum(-1).detach()
    torch.testing.assert_close((x * grad).sum(-1), weight_part, rtol=1e-12, atol=1e-12)


def test_attention_rules_route_relevance_through_values() -> None:
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, n=2, seed=3)
    last = model.dims.n_layers - 1
    sites = [site_name(k, last) for k in ("q", "k", "v")]
    metric = get_metric("logit_diff")
    grads = {}
    for rule in ("gradient", "cp", "attnlrp"):
        run = forward(model, task, "clean", metric, sites, grad_sites=sites, attention_rule=rule)
        grads[rule] = run.grads(sites)
    q, k, v = sites
    assert grads["cp"][q].abs().max() == 0 and grads["cp"][k].abs().max() == 0
    torch.testing.assert_close(grads["cp"][v], grads["gradient"][v])
    torch.testing.assert_close(grads["attnlrp"][v], grads["gradient"][v] / 2)
    torch.testing.assert_close(grads["attnlrp"][q], grads["gradient"][q] / 4)


def test_relp_with_qk_fix() -> None:
    """RelP's QK fix: rules off it is AtP + QK fix; on a linear tail it is exact for the last layer's q and k."""
    from tests.attribution.test_atp import linear_tail

    model = interp.load_model("tiny-qwen3", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=4)
    sweeps = ["head_q_by_pos", "head_k"]
    off = relp(model, task, sweeps, rules=RelPRules.none(), qk_fix=True)
    star = atp_star(model, task, sweeps, grad_drop=False)
    for sweep in sweeps:
        assert torch.equal(off[sweep].values, star[sweep].values)
    linear = linear_tail(model, drop_last_mlp=True)
    last = model.dims.n_layers - 1
    fixed = relp(linear, task, SweepRequest("head_k_by_pos", layers=[last]), qk_fix=True)
    exact = patch_sweep(linear, task, "head_k_by_pos", layers=[last])
    assert fixed.method == "relp+qk"
    torch.testing.assert_close(fixed.values, exact.values, rtol=0, atol=1e-9)
