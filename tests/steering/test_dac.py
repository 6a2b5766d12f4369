"""Dynamic Activation Composition: bounds, zero vectors, composition, and the cache against the re-run."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.steering import DACProperty, dac_deltas, dac_generate
from interp.steering.dac import reached_mean, union_kl
from tests.steering.conftest import NAMES, PROMPTS

STEPS = 5


@pytest.fixture(scope="module")
def prop(model: interp.Model) -> DACProperty:
    a = [f"{x} and {y} went to the store. {y} gave a drink to" for x, y in zip(NAMES, NAMES[1:])]
    b = [f"{x} and {y} had a long talk at the park. {y} handed the book to" for x, y in zip(NAMES, NAMES[1:])]
    return dac_deltas(model, a, b, steps=STEPS, layers=[0, 1, 2], name="store")


def test_deltas_are_the_per_step_mean_difference_at_the_last_position(model: interp.Model) -> None:
    a, b = ["Mary and John went to the store."], ["Tom had a long talk at the park with"]
    prop = dac_deltas(model, a, b, steps=3, layers=[1])
    site = "blocks.1.attn.hook_z"
    reads = []
    for prompt in (a[0], b[0]):
        tokens = model.generate(prompt, max_new_tokens=3).tokens
        _, cache = model.run_with_cache(tokens, sites=[site])
        reads.append(cache[site][0, -4:-1])
    torch.testing.assert_close(prop.deltas[:, 0], reads[0] - reads[1], atol=1e-5, rtol=1e-5)


def test_alphas_stay_in_bounds_and_cache_equals_rerun(model: interp.Model, prop: DACProperty) -> None:
    cached = dac_generate(model, PROMPTS, [prop], max_new_tokens=STEPS, top_p=0.9)
    rerun = dac_generate(model, PROMPTS, [prop], max_new_tokens=STEPS, top_p=0.9, use_cache=False)
    assert torch.equal(cached.tokens, rerun.tokens)
    torch.testing.assert_close(cached.alphas, rerun.alphas, atol=1e-4, rtol=1e-4)
    assert cached.alphas.min() >= 0 and cached.alphas.max() <= 2
    assert cached.alphas.max() > 0.05
    assert torch.equal(cached.alphas, cached.kls.clamp(0, 2))
    plain = model.generate(PROMPTS, max_new_tokens=STEPS)
    assert not torch.equal(cached.tokens, plain.tokens)
    trace = cached.trace()
    assert len(trace) == len(PROMPTS) * STEPS and set(trace.property) == {"store"}


def test_zero_vectors_give_zero_alpha_and_unsteered_text(model: interp.Model, prop: DACProperty) -> None:
    zero = DACProperty("zero", torch.zeros_like(prop.deltas), prop.layers, prop.kind)
    result = dac_generate(model, PROMPTS, [zero], max_new_tokens=STEPS, top_p=1.0)
    assert torch.equal(result.alphas, torch.zeros_like(result.alphas))
    assert torch.equal(result.tokens, model.generate(PROMPTS, max_new_tokens=STEPS).tokens)


def test_a_zero_property_reduces_composition_to_the_other(model: interp.Model, prop: DACProperty) -> None:
    zero = DACProperty("zero", torch.zeros_like(prop.deltas), prop.layers, prop.kind)
    single = dac_generate(model, PROMPTS, [prop], max_new_tokens=STEPS, top_p=0.7)
    both = dac_generate(model, PROMPTS, [zero, prop], max_new_tokens=STEPS, top_p=0.7)
    assert torch.equal(both.tokens, single.tokens)
    assert torch.equal(both.alphas[..., 1], single.alphas[..., 0])
    assert torch.equal(both.alphas[..., 0], torch.zeros_like(both.alphas[..., 0]))


def test_union_kl_renormalises_over_the_top_p_union() -> None:
    orig = torch.tensor([[3.0, 2.0, 0.0, -1.0]])
    steered = torch.tensor([[0.0, 2.5, 3.0, -1.0]])
    kl_full = union_kl(orig, steered, 1.0)
    p, q = orig.double().log_softmax(-1), steered.double().log_softmax(-1)
    assert kl_full.item() == pytest.approx(float((p.exp() * (p - q)).sum()), rel=1e-9)
    kl = union_kl(orig, steered, 0.5)  # top-p 0.5 keeps token 0 of orig and token 2 of steered
    p, q = orig[0, [0, 2]].double().log_softmax(-1), steered[0, [0, 2]].double().log_softmax(-1)
    assert kl.item() == pytest.approx(float((p.exp() * (p - q)).sum()), rel=1e-9)


def test_step_means_count_only_rows_that_reached_the_step() -> None:
    stacked = torch.randn(3, 4, 2, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lengths = torch.tensor([1, 3, 2])
    naive = torch.stack([
        torch.stack([stacked[row, step] for row in range(3) if lengths[row] > step]).mean(dim=0) for step in range(3)
    ])
    torch.testing.assert_close(reached_mean(stacked, lengths), naive, rtol=1e-12, atol=1e-12)
    # a model's activations on another device than the generation's lengths: every operation stays on
    # the activations' device (the meta device refuses any CPU operand, as CUDA does)
    assert reached_mean(stacked.to("meta"), lengths).shape == (3, 2, 5)
