"""Function vectors: prompts, head effects through the patching engine, the vector and its injection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import interp
from interp.errors import InvalidArgumentError
from interp.interventions import MeanAblate
from interp.sites import site_name
from interp.steering.fv_heads import head_indirect_effects, mean_head_activations
from interp.steering.fv_tasks import (
    SHIPPED_TASKS,
    ICLTask,
    build_prompts,
    format_pair,
    icl_prompt,
    load_icl_task,
    single_token_fraction,
)
from interp.steering.fv_vector import function_vector, injection, random_heads, top_heads
from interp.vectors import LayerVectors
from tests.conftest import no_hooks_left

TASK = ICLTask("toy", tuple((f"w{i}", f"v{i}") for i in range(12)))


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    return None


def _prompts(model: interp.Model, n: int = 4, shuffle: bool = False, seed: int = 0):
    return build_prompts(model.tokenizer, TASK, TASK.pairs[:n], 3, seed, shuffle_labels=shuffle)


# --- tasks and prompts -------------------------------------------------------------------------
def test_template_is_the_reference_one() -> None:
    assert format_pair("hot", "cold") == "Q: hot\nA: cold\n\n"
    assert icl_prompt([("hot", "cold"), ("up", "down")], "big") == "Q: hot\nA: cold\n\nQ: up\nA: down\n\nQ: big\nA:"
    assert icl_prompt([], "big") == "Q: big\nA:"


@pytest.mark.parametrize("name", SHIPPED_TASKS)
def test_shipped_tasks_have_100_pairs_with_distinct_inputs(name: str) -> None:
    task = load_icl_task(name)
    inputs = [x for x, _ in task.pairs]
    assert len(task) >= 100 and len(set(inputs)) == len(inputs)


def test_prompts_are_seeded_and_shuffling_moves_every_label() -> None:
    model = interp.load_model("tiny-llama")
    clean = build_prompts(model.tokenizer, TASK, TASK.pairs[:6], 4, seed=3)
    again = build_prompts(model.tokenizer, TASK, TASK.pairs[:6], 4, seed=3)
    shuffled = build_prompts(model.tokenizer, TASK, TASK.pairs[:6], 4, seed=3, shuffle_labels=True)
    assert clean.prompts == again.prompts
    for prompt, corrupt, (query, _) in zip(clean.prompts, shuffled.prompts, TASK.pairs[:6], strict=True):
        blocks = prompt.split("\n\n")[:-1]
        corrupt_blocks = corrupt.split("\n\n")[:-1]
        assert [b.split("\n")[0] for b in blocks] == [b.split("\n")[0] for b in corrupt_blocks]  # same inputs
        assert all(a != b for a, b in zip(blocks, corrupt_blocks, strict=True))  # every label moved
        assert f"Q: {query}\n" not in prompt[: -len(f"Q: {query}\nA:")]  # the query is not a demonstration
        assert sorted(b.split("A: ")[1] for b in blocks) == sorted(b.split("A: ")[1] for b in corrupt_blocks)
    assert clean.answer_ids.tolist() == [model.tokenizer.encode(" " + y, add_special_tokens=False)[0] for _, y in TASK.pairs[:6]]


def test_bad_task_files_name_the_line(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n{"input": "a"}\n')
    with pytest.raises(InvalidArgumentError, match=r"bad.jsonl:2 must be an object"):
        load_icl_task(path)
    with pytest.raises(InvalidArgumentError, match="no in-context task 'nope'"):
        load_icl_task("nope")
    with pytest.raises(InvalidArgumentError, match="fewer than n_shots=20"):
        build_prompts(interp.load_model("tiny-llama").tokenizer, TASK, TASK.pairs[:1], 20, 0)


# --- the AIE through the engine equals a one-forward-per-head loop -----------------------------
def _naive_cie(model: interp.Model, prompts, means: torch.Tensor) -> torch.Tensor:
    """One full forward per (layer, head): the head's last-token activation set to its mean."""
    def prob(interventions):
        logits = model.run(prompts.prompts, interventions)[:, -1].double()
        return logits.softmax(-1).gather(-1, prompts.answer_ids.to(logits.device).unsqueeze(-1)).squeeze(-1)

    base = prob([])
    out = torch.zeros(model.dims.n_layers, model.dims.n_heads, len(prompts), dtype=torch.float64)
    for layer in range(model.dims.n_layers):
        for head in range(model.dims.n_heads):
            ablate = MeanAblate(site=site_name("z", layer), mean=means[layer], positions=(-1,), heads=(head,))
            out[layer, head] = prob([ablate]) - base
    return out


def test_engine_aie_equals_the_naive_loop(tiny64: interp.Model) -> None:
    clean, shuffled = _prompts(tiny64, 5), _prompts(tiny64, 5, shuffle=True, seed=1)
    means = mean_head_activations(tiny64, clean, batch_size=2)
    effects = head_indirect_effects(tiny64, shuffled, means)
    naive = _naive_cie(tiny64, shuffled, means)
    assert effects.cie.shape == naive.shape
    assert naive.abs().max() > 1e-6  # the heads matter, so the comparison can fail
    torch.testing.assert_close(effects.cie.double(), naive, rtol=0, atol=1e-10)
    torch.testing.assert_close(effects.aie.double(), naive.mean(-1), rtol=0, atol=1e-10)
    assert no_hooks_left(tiny64)


def test_mean_head_activations_are_the_plain_mean(tiny64: interp.Model) -> None:
    clean = _prompts(tiny64, 5)
    means = mean_head_activations(tiny64, clean, batch_size=2)
    sites = [site_name("z", layer) for layer in range(tiny64.dims.n_layers)]
    rows = []
    for prompt in clean.prompts:  # one prompt at a time: no padding at all
        _, cache = tiny64.run_with_cache(prompt, sites=sites)
        rows.append(torch.stack([cache[site][0, -1] for site in sites]))
    torch.testing.assert_close(means, torch.stack(rows).mean(0).cpu(), rtol=0, atol=1e-12)


def _zero_head_output(model: interp.Model, layer: int, head: int) -> None:
    module, d_head = model.arch.out_proj(layer), model.dims.d_head
    columns = slice(head * d_head, (head + 1) * d_head)
    with torch.no_grad():
        if isinstance(module, nn.Linear):
            module.weight[:, columns] = 0
        else:  # GPT-2's Conv1D stores (d_in, d_out)
            module.weight[columns, :] = 0


def test_a_head_whose_output_is_never_read_has_aie_zero(tiny64: interp.Model) -> None:
    layer, head = tiny64.dims.n_layers - 2, 1
    _zero_head_output(tiny64, layer, head)
    assert torch.count_nonzero(tiny64.arch.out_proj_weight(layer)[head]) == 0
    clean, shuffled = _prompts(tiny64, 4), _prompts(tiny64, 4, shuffle=True, seed=1)
    effects = head_indirect_effects(tiny64, shuffled, mean_head_activations(tiny64, clean))
    assert effects.cie[layer, head].abs().max() < 1e-12
    others = effects.cie.clone()
    others[layer, head] = 0
    assert others.abs().max() > 1e-6


# --- the vector ---------------------------------------------------------------------------------
def _reference_head_output(model: interp.Model, layer: int, head: int, mean: torch.Tensor) -> torch.Tensor:
    """The reference implementation's way: the whole out-projection on a zero-padded activation."""
    padded = torch.zeros(model.dims.n_heads, model.dims.d_head, dtype=mean.dtype)
    padded[head] = mean
    module = model.arch.out_proj(layer)
    return module(padded.flatten()), module(torch.zeros_like(padded.flatten()))


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-neox"])
def test_fv_is_the_sum_of_w_o_slices_times_the_means(name: str) -> None:
    model = interp.load_model(name, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(model.dims.n_layers, model.dims.n_heads, model.dims.d_head, generator=generator, dtype=torch.float64)
    heads = [(0, 1), (1, 0), (model.dims.n_layers - 1, 2)]
    fv = function_vector(model, means, heads, layers=[0, 1])
    biased = function_vector(model, means, heads, layers=[1], with_bias=True)
    head_only = sum(full - zero for full, zero in (_reference_head_output(model, l, h, means[l, h]) for l, h in heads))
    reference = sum(full for full, _ in (_reference_head_output(model, l, h, means[l, h]) for l, h in heads))
    assert isinstance(fv, LayerVectors) and fv.kind == "resid_post" and fv.layers == (0, 1)
    torch.testing.assert_close(fv.vector(0), head_only.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(fv.vector(1), fv.vector(0), rtol=0, atol=0)
    torch.testing.assert_close(biased.vector(1), reference.detach(), rtol=0, atol=1e-12)
    assert fv.meta["heads"] == [[l, h] for l, h in heads]
    if name == "tiny-gpt2":  # a biased out-projection: the two forms differ by one bias per head
        bias = model.arch.out_proj_bias(0)
        assert bias is not None and bias.abs().max() > 0
        assert (biased.vector(1) - fv.vector(1)).abs().max() > 1e-6


def test_a_zero_fv_is_a_no_op_bitwise(tiny: interp.Model) -> None:
    zero = LayerVectors("resid_post", (0, 1), torch.zeros(2, tiny.dims.d_model), method="function_vector")
    prompts = _prompts(tiny, 3).prompts
    plain = tiny.run(prompts)
    assert torch.equal(tiny.run(prompts, [injection(zero, 1)]), plain)
    direction = torch.randn(1, tiny.dims.d_model, generator=torch.Generator().manual_seed(0))
    some = LayerVectors("resid_post", (1,), 10 * direction, method="function_vector")
    steered = tiny.run(prompts, [injection(some, 1)])
    real = tiny.to_tokens(prompts).attention_mask[:, :-1].bool()  # padding may attend anywhere
    torch.testing.assert_close(steered[:, :-1][real], plain[:, :-1][real])  # only the last token is steered
    assert (steered[:, -1] - plain[:, -1]).abs().max() > 1e-3


def test_head_choice() -> None:
    aie = torch.tensor([[0.1, 0.5, 0.0], [0.3, -0.2, 0.4]])
    assert top_heads(aie, 3) == [(0, 1), (1, 2), (1, 0)]
    assert top_heads(aie, 2, layers=[4, 7]) == [(4, 1), (7, 2)]
    drawn = random_heads(4, 3, 5, seed=1)
    assert drawn == random_heads(4, 3, 5, seed=1) and len(set(drawn)) == 5
    assert not set(random_heads(2, 3, 4, seed=0, exclude=[(0, 0), (1, 1)])) & {(0, 0), (1, 1)}
    with pytest.raises(InvalidArgumentError, match="between 1 and"):
        top_heads(aie, 0)


def test_fv_composition_by_summation(tiny: interp.Model) -> None:
    means = mean_head_activations(tiny, _prompts(tiny, 3))
    a = function_vector(tiny, means, [(0, 0)], layers=[1])
    b = function_vector(tiny, means, [(1, 1)], layers=[1])
    both = function_vector(tiny, means, [(0, 0), (1, 1)], layers=[1])
    torch.testing.assert_close((a + b).vector(1), both.vector(1))


def test_single_token_fraction_counts_answers() -> None:
    model = interp.load_model("tiny-llama")
    task = ICLTask("names", (("a", "Mary"), ("b", "John"), ("c", "zzqx")))
    assert single_token_fraction(model.tokenizer, task) == pytest.approx(2 / 3)
