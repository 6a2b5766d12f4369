"""Generation under interventions, checked against a full recompute of the sequence at every step.

The reference (``use_cache=False``) runs every forward over the whole sequence, so each intervention
sees all columns at once; the cached path sees one new column per step. Equal tokens under
interventions at absolute positions show that the position frame selects the same tokens in both.
"""

from __future__ import annotations

import threading

import pytest
import torch

import interp
from interp import Add, Replace, Zero
from interp.sites import site_name
from tests.conftest import PROMPTS, no_hooks_left

NEW_TOKENS = 6


def _interventions(model: interp.Model) -> list[interp.interventions.Intervention]:
    """An Add on the residual at absolute positions (prompt tokens in some rows, generated ones in
    others), a Zero on two heads, and steering on generated tokens only."""
    generator = torch.Generator().manual_seed(7)
    d_model = model.dims.d_model
    return [
        Add(site=site_name("resid_pre", 1), vector=torch.randn(d_model, generator=generator), scale=4.0, positions=[1, 12, 17]),
        Zero(site=site_name("z", 0), heads=[0, 2]),
        Add(site=site_name("resid_post", 1), vector=torch.randn(d_model, generator=generator), scale=4.0, scope="generated"),
    ]


def _assert_same_generation(a: interp.generation.Generation, b: interp.generation.Generation, tol: float) -> None:
    assert torch.equal(a.tokens, b.tokens)
    assert a.logits is not None and b.logits is not None
    torch.testing.assert_close(a.logits, b.logits, rtol=tol, atol=tol)


def test_cached_generation_equals_full_recompute_under_interventions(tiny: interp.Model) -> None:
    plan = _interventions(tiny)
    cached = tiny.generate(PROMPTS, plan, max_new_tokens=NEW_TOKENS, return_logits=True)
    recomputed = tiny.generate(PROMPTS, plan, max_new_tokens=NEW_TOKENS, return_logits=True, use_cache=False)
    _assert_same_generation(cached, recomputed, 1e-4)
    plain = tiny.generate(PROMPTS, max_new_tokens=NEW_TOKENS, return_logits=True)
    assert cached.logits is not None and plain.logits is not None
    assert (cached.logits - plain.logits).abs().amax() > 0.1, "the interventions must change the generation"
    assert cached.tokens.shape == (len(PROMPTS), cached.prompt_length + NEW_TOKENS)
    assert torch.equal(cached.generated_lengths.cpu(), torch.full((len(PROMPTS),), NEW_TOKENS))
    assert no_hooks_left(tiny)


def test_generated_scope_leaves_prompt_logits_bitwise_untouched(tiny: interp.Model) -> None:
    steer = _interventions(tiny)[2]
    batch = tiny.to_tokens(PROMPTS)
    assert torch.equal(tiny.run(batch, [steer]), tiny.run(batch))
    steered = tiny.generate(PROMPTS, [steer], max_new_tokens=3, return_logits=True)
    plain = tiny.generate(PROMPTS, max_new_tokens=3, return_logits=True)
    assert steered.logits is not None and plain.logits is not None
    assert torch.equal(steered.logits[:, 0], plain.logits[:, 0])  # chosen from the prompt's last column
    assert not torch.equal(steered.logits[:, 1], plain.logits[:, 1])


def test_left_padded_batch_generates_what_each_prompt_generates_alone(tiny: interp.Model) -> None:
    plan = _interventions(tiny)
    batched = tiny.generate(PROMPTS, plan, max_new_tokens=NEW_TOKENS, return_logits=True)
    assert batched.attention_mask[2, 0] == 0, "the shortest prompt is left-padded"
    assert batched.logits is not None
    for row, prompt in enumerate(PROMPTS):
        alone = tiny.generate(prompt, plan, max_new_tokens=NEW_TOKENS, return_logits=True)
        assert alone.logits is not None
        assert torch.equal(alone.generated[0], batched.generated[row])
        assert alone.texts[0] == batched.texts[row]
        torch.testing.assert_close(alone.logits[0], batched.logits[row], rtol=1e-4, atol=1e-4)


def test_negative_positions_count_from_the_end_of_each_prompt() -> None:
    model = interp.load_model("tiny-llama")
    batch = model.to_tokens(PROMPTS)
    vector = torch.randn(model.dims.d_model, generator=torch.Generator().manual_seed(3))
    site = site_name("resid_pre", 1)
    from_end = model.generate(PROMPTS, [Add(site=site, vector=vector, scale=4.0, positions=[-1], scope="prompt")],
                              max_new_tokens=4, return_logits=True)
    for row, prompt in enumerate(PROMPTS):
        last = int(batch.lengths[row]) - 1
        absolute = model.generate(prompt, [Add(site=site, vector=vector, scale=4.0, positions=[last])],
                                  max_new_tokens=4, return_logits=True)
        assert torch.equal(absolute.generated[0], from_end.generated[row])
    for scope in ("generated", "all"):
        with pytest.raises(interp.InterventionError, match="negative positions .* scope='prompt'"):
            model.generate(PROMPTS, [Zero(site=site, positions=[-1], scope=scope)], max_new_tokens=2)
    with pytest.raises(interp.InterventionError, match="scope 'later' .* not one of"):
        Zero(site=site, scope="later")  # type: ignore[arg-type]
    assert no_hooks_left(model)


def test_sampling_is_reproducible_with_a_seed(tiny: interp.Model) -> None:
    def sample(seed: int, **settings: float) -> torch.Tensor:
        return tiny.generate(PROMPTS, max_new_tokens=8, temperature=2.0, seed=seed, **settings).generated

    first = sample(0)
    assert torch.equal(first, sample(0))
    assert not torch.equal(first, sample(1))
    greedy = tiny.generate(PROMPTS, max_new_tokens=8).generated
    assert torch.equal(sample(5, top_k=1), greedy)
    assert torch.equal(sample(6, top_p=1e-6), greedy)


def test_stop_tokens_end_rows_and_generation() -> None:
    model = interp.load_model("tiny-qwen2")
    greedy = model.generate(PROMPTS, max_new_tokens=5)
    stop = int(greedy.generated[0, 1])
    stopped = model.generate(PROMPTS, max_new_tokens=5, stop_tokens=[stop])
    first_stop = [int((row == stop).nonzero()[0]) + 1 if (row == stop).any() else 5 for row in greedy.generated]
    assert stopped.generated_lengths.tolist() == first_stop
    for row, length in enumerate(first_stop):
        assert torch.equal(stopped.generated[row, :length], greedy.generated[row, :length])
        assert (stopped.generated[row, length:] == model.tokenizer.pad_token_id).all()
        assert stopped.texts[row] == model.tokenizer.decode(greedy.generated[row, :length].tolist())


def explode(value: torch.Tensor, site: str) -> torch.Tensor:
    raise ValueError("hook failed")


def test_hooks_and_lock_released_after_generation(tiny: interp.Model) -> None:
    tiny.generate(PROMPTS, _interventions(tiny), max_new_tokens=2)
    assert no_hooks_left(tiny)
    with pytest.raises(ValueError, match="hook failed"):
        tiny.generate(PROMPTS, [Replace(site=site_name("mlp_out", 1), fn=explode, scope="generated")], max_new_tokens=3)
    assert no_hooks_left(tiny)
    with pytest.raises(interp.GenerationError, match="top_p must be in"):
        tiny.generate(PROMPTS, max_new_tokens=2, temperature=1.0, top_p=0.0)
    acquired: list[bool] = []

    def other() -> None:
        acquired.append(tiny.lock.acquire(timeout=5))
        tiny.lock.release()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert acquired == [True]


@pytest.mark.slow
def test_generation_on_default_model(smollm: interp.Model) -> None:
    prompts = [PROMPTS[0], PROMPTS[2]]  # the second is left-padded
    plan = _interventions(smollm)
    cached = smollm.generate(prompts, plan, max_new_tokens=2, return_logits=True)
    recomputed = smollm.generate(prompts, plan, max_new_tokens=2, return_logits=True, use_cache=False)
    _assert_same_generation(cached, recomputed, 2e-3)
    assert cached.logits is not None
    for row, prompt in enumerate(prompts):
        alone = smollm.generate(prompt, plan, max_new_tokens=2, return_logits=True)
        assert alone.logits is not None
        assert torch.equal(alone.generated[0], cached.generated[row])
        torch.testing.assert_close(alone.logits[0], cached.logits[row], rtol=2e-3, atol=2e-3)
    assert no_hooks_left(smollm)
