"""Batches sized by a memory budget: the plan, the estimate, and results identical to one batch."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.activations import ALL, LAST, ActivationsError, SpanMean, extract, plan_batches, row_bytes
from tests.conftest import PROMPTS

MANY = [p[: 12 + 5 * i] for i, p in enumerate(PROMPTS * 4)]
SITES = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post"]


def test_plan_respects_budget_and_order():
    lengths = [3, 9, 4, 4, 12, 2]
    cost = lambda width: 10 * width  # noqa: E731
    plan = plan_batches(lengths, cost, budget_bytes=200)
    assert plan[0][0] == 0 and plan[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))  # consecutive, in order
    for lo, hi in plan:
        assert hi - lo == 1 or (hi - lo) * cost(max(lengths[lo:hi])) <= 200
    assert plan_batches(lengths, cost, budget_bytes=1) == [(i, i + 1) for i in range(6)]  # too small: one by one
    assert plan_batches(lengths, cost, budget_bytes=10**9, max_rows=4) == [(0, 4), (4, 6)]
    assert plan_batches(lengths, cost, budget_bytes=10**9, start=5) == [(5, 6)]
    with pytest.raises(ActivationsError, match="positive"):
        plan_batches(lengths, cost, budget_bytes=0)


def test_estimate_grows_with_width_sites_and_gradients():
    model = interp.load_model("tiny-llama")
    one = row_bytes(model, SITES[:1], 16)
    assert row_bytes(model, SITES[:1], 32) > 2 * one - 1
    assert row_bytes(model, SITES, 16) > one
    assert row_bytes(model, SITES[:1], 16, lm_loss_grads=True) > row_bytes(model, SITES[:1], 16)
    assert row_bytes(model, ["logits"], 16) > model.dims.d_vocab * 16 * 4


@pytest.mark.parametrize("select", [LAST, ALL, SpanMean([(0, 3)] * len(MANY))], ids=["last", "all", "span"])
def test_budget_batches_equal_one_batch(tiny64: interp.Model, select):
    whole = extract(tiny64, MANY, SITES, select, budget_bytes=1 << 40)
    per = row_bytes(tiny64, SITES, max(len(interp.tokenize.encode(tiny64.tokenizer, p)) for p in MANY))
    small = extract(tiny64, MANY, SITES, select, budget_bytes=3 * per)
    single = extract(tiny64, MANY, SITES, select, budget_bytes=1)
    for site in SITES:
        assert small[site].shape == whole[site].shape
        assert torch.allclose(small[site], whole[site], rtol=0, atol=1e-12)
        assert torch.allclose(single[site], whole[site], rtol=0, atol=1e-12)
