"""Steering under generation: identity at strength 0, cache = recompute, scopes, ablation, SAE latents."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import ProjectOut, load_interventions, save_interventions
from interp.errors import InterventionError
from interp.sae import SAE, SAEConfig, TopKConfig
from interp.steering import ContrastSet, ablate, clamp_latent, extract_vectors, steer, steer_latent
from tests.conftest import no_hooks_left
from tests.steering.conftest import PROMPTS


@pytest.fixture(scope="module")
def vectors(model: interp.Model, contrast: ContrastSet) -> interp.vectors.LayerVectors:
    return extract_vectors(model, contrast, "resid_post", [0, 1, 2])


def test_strength_zero_is_bitwise_identity(model: interp.Model, vectors) -> None:
    plain = model.generate(PROMPTS, max_new_tokens=6, return_logits=True)
    for unit in ("raw", "norm"):
        zero = model.generate(PROMPTS, steer(vectors, 0.0, unit), max_new_tokens=6, return_logits=True)
        assert torch.equal(zero.tokens, plain.tokens) and torch.equal(zero.logits, plain.logits)
    sampled = [model.generate(PROMPTS, plan, max_new_tokens=6, temperature=1.0, seed=3) for plan in ([], steer(vectors, 0.0))]
    assert torch.equal(sampled[0].tokens, sampled[1].tokens)


@pytest.mark.parametrize("scope", ["all", "generated", "prompt"])
def test_cached_equals_uncached_under_several_vectors(model: interp.Model, vectors, scope: str) -> None:
    plan = steer(vectors, 0.6, "norm", layers=[0, 2], scope=scope) + steer(vectors, -0.3, "norm", layers=[1], rows=[1])
    cached = model.generate(PROMPTS, plan, max_new_tokens=8, return_logits=True)
    uncached = model.generate(PROMPTS, plan, max_new_tokens=8, return_logits=True, use_cache=False)
    assert torch.equal(cached.tokens, uncached.tokens)
    torch.testing.assert_close(cached.logits, uncached.logits, atol=1e-4, rtol=1e-4)
    plain = model.generate(PROMPTS, max_new_tokens=8, return_logits=True)
    assert (cached.logits - plain.logits).abs().amax() > 0.1
    assert no_hooks_left(model)


def test_absolute_positions_steer_generated_tokens_under_the_cache(model: interp.Model, vectors) -> None:
    """'From token N on' keeps steering after the prompt: the position is absolute, not per forward."""
    lengths = model.to_tokens(PROMPTS).lengths
    late = [int(lengths.max()) + 2, int(lengths.max()) + 3]
    plan = steer(vectors, 1.0, "norm", layers=[1], positions=late)
    cached = model.generate(PROMPTS, plan, max_new_tokens=6, return_logits=True)
    uncached = model.generate(PROMPTS, plan, max_new_tokens=6, return_logits=True, use_cache=False)
    plain = model.generate(PROMPTS, max_new_tokens=6, return_logits=True)
    assert torch.equal(cached.tokens, uncached.tokens)
    first_steered = late[0] - int(lengths[0]) + 1  # step t reads the token at position length - 1 + t
    assert torch.equal(cached.logits[0, :first_steered], plain.logits[0, :first_steered])
    assert not torch.equal(cached.logits[0, first_steered], plain.logits[0, first_steered])


def test_generated_scope_leaves_prompt_logits_untouched(model: interp.Model, vectors) -> None:
    plan = steer(vectors, 1.0, "norm", scope="generated")
    batch = model.to_tokens(PROMPTS)
    assert torch.equal(model.run(batch, plan), model.run(batch))
    steered = model.generate(PROMPTS, plan, max_new_tokens=3, return_logits=True)
    plain = model.generate(PROMPTS, max_new_tokens=3, return_logits=True)
    assert torch.equal(steered.logits[:, 0], plain.logits[:, 0])
    assert not torch.equal(steered.logits[:, 1], plain.logits[:, 1])


def test_projection_out_leaves_activations_orthogonal_and_round_trips(model: interp.Model, vectors, tmp_path) -> None:
    site = vectors.site(1)
    plan = ablate(vectors, layers=[1])
    _, cache = model.run_with_cache(PROMPTS, sites=[site], interventions=plan)
    along = cache[site].double() @ vectors.unit(1).double()
    mask = model.to_tokens(PROMPTS).attention_mask.bool()
    assert along[mask].abs().max() < 1e-4
    _, before = model.run_with_cache(PROMPTS, sites=[site])
    assert (before[site].double() @ vectors.unit(1).double())[mask].abs().max() > 0.1
    save_interventions(plan, tmp_path / "plan")
    loaded = load_interventions(tmp_path / "plan")
    assert isinstance(loaded[0], ProjectOut) and torch.equal(loaded[0].direction, plan[0].direction)
    assert torch.equal(model.run(PROMPTS, loaded), model.run(PROMPTS, plan))
    x = torch.randn(2, 3, 64, dtype=torch.float64)
    u = vectors.unit(1).double()
    half = ProjectOut(site=site, direction=vectors.vector(1), scale=0.5).new_value(x, model.site(site))
    torch.testing.assert_close(half, x - 0.5 * (x @ u).unsqueeze(-1) * u)


def _sae(model: interp.Model) -> SAE:
    config = SAEConfig(d_in=model.dims.d_model, d_sae=32, activation=TopKConfig(k=4), site="blocks.1.hook_resid_post")
    return SAE.create(config, seed=0)


def test_sae_latent_add_and_clamp(model: interp.Model) -> None:
    sae = _sae(model)
    site = sae.site
    latent = 5
    added = steer_latent(sae, latent, 3.0)
    _, plain = model.run_with_cache(PROMPTS, sites=[site])
    _, steered = model.run_with_cache(PROMPTS, sites=[site], interventions=added)
    torch.testing.assert_close(steered[site] - plain[site], (3.0 * sae.W_dec[latent]).expand_as(plain[site]).detach())
    clamp = clamp_latent(sae, latent, 7.5, scope="prompt")
    _, clamped = model.run_with_cache(PROMPTS, sites=[site], interventions=clamp)
    mask = model.to_tokens(PROMPTS).attention_mask.bool()
    with torch.no_grad():  # naive reference, one token at a time: x + (7.5 - f_latent(x)) * W_dec[latent]
        expected = torch.stack(
            [x + (7.5 - sae.encode(x.unsqueeze(0)).dense()[0, latent]) * sae.W_dec[latent] for x in plain[site][mask]]
        )
    torch.testing.assert_close(clamped[site][mask], expected, atol=1e-5, rtol=1e-5)
    assert (clamped[site][mask] - plain[site][mask]).abs().max() > 0.1
    cached = model.generate(PROMPTS, clamp_latent(sae, latent, 4.0), max_new_tokens=4)
    uncached = model.generate(PROMPTS, clamp_latent(sae, latent, 4.0), max_new_tokens=4, use_cache=False)
    assert torch.equal(cached.tokens, uncached.tokens)
    with pytest.raises(InterventionError, match="cannot be saved"):
        save_interventions(clamp, "unused")
