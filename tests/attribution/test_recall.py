"""Recall against cost (the AtP* evaluation protocol): curves, rankings, verification, storage, figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import interp
from interp.attribution import SweepRequest, atp, compare, load_comparison, record
from interp.attribution.recall import (
    bound_curve,
    forward_equivalents,
    ranking_scores,
    recall_curve,
    recall_summary,
    recall_table,
    true_top,
    verify_in_order,
)
from interp.patching import patch_sweep
from interp.runs import RunStore
from interp.tasks import ioi_task
from interp.viz.attribution import recall_cost


def _exact_with_effects(result, effects: torch.Tensor):
    """A copy of ``result`` whose per-example effects are ``effects`` (example, cells)."""
    values = result.base.view(-1, 1, 1).double() + effects.view(result.values.shape).double()
    return result.__class__(**{**vars(result), "values": values.to(result.values.dtype), "scores": None})


@pytest.fixture(scope="module")
def small() -> tuple[interp.Model, object]:
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    return model, ioi_task(model, n=3, seed=3)


def test_recall_curve_counts_true_top_in_ranking_order(small) -> None:
    model, task = small
    estimate = atp(model, task, SweepRequest("mlp_out", layers=[0]))
    n = estimate.values[0].numel()
    truth = torch.arange(n, dtype=torch.float64) - 3.5  # |effect| largest at the end, then at the start
    exact = _exact_with_effects(estimate, truth.expand(3, n))
    assert true_top(exact, 3) == [n - 1, n - 2, n - 3]
    scores = torch.zeros(n, dtype=torch.float64)
    scores[[n - 1, 0, n - 3]] = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)  # second pick is not a true top cell
    curve = recall_curve(exact, scores, method_cost=4.0, top_k=3)
    assert curve["cost"].tolist()[:4] == [4.0, 5.0, 6.0, 7.0]
    assert curve["recall"].tolist()[:4] == pytest.approx([0.0, 1 / 3, 1 / 3, 2 / 3])
    assert curve["recall"].iloc[-1] == 1.0 and len(curve) == n + 1
    # a perfect ranking reaches recall 1 after exactly top_k verifications
    perfect = recall_curve(exact, truth.abs(), 0.0, 3)
    assert perfect["recall"].tolist()[:4] == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_signed_and_unsigned_rankings_differ_where_signs_cancel(small) -> None:
    model, task = small
    estimate = atp(model, task, SweepRequest("mlp_out", layers=[0]))
    n = estimate.values[0].numel()
    effects = torch.zeros(3, n, dtype=torch.float64)
    effects[:, 0] = torch.tensor([5.0, -5.0, 0.0])  # large per pair, zero on average
    effects[:, 1] = 1.0
    guess = _exact_with_effects(estimate, effects)
    signed, unsigned = ranking_scores(guess, "signed"), ranking_scores(guess, "unsigned")
    assert signed[0] == pytest.approx(0.0) and signed[1] == pytest.approx(1.0)
    assert unsigned[0] == pytest.approx(10 / 3) and unsigned[1] == pytest.approx(1.0)


def test_bound_is_below_recall_and_certain_when_everything_is_verified(small) -> None:
    model, task = small
    estimate = atp(model, task, "mlp_out")
    exact = patch_sweep(model, task, "mlp_out")
    scores = ranking_scores(estimate)
    bound = bound_curve(exact, scores, 3.0, top_k=4, samples=5)
    curve = recall_curve(exact, scores, 3.0, top_k=4)
    assert bound["recall"].iloc[-1] == 1.0 and bound["recall"].iloc[0] < 1.0
    assert (bound["cost"] - curve["cost"]).iloc[0] == 5  # the sampled components are paid for
    # with no unverified component left the sample is empty and the bound is exact
    assert bound["cost"].iloc[-1] == curve["cost"].iloc[-1]


def test_verification_patches_in_ranking_order_like_the_exhaustive_sweep(small) -> None:
    model, task = small
    estimate = atp(model, task, "head_z")
    exact = patch_sweep(model, task, "head_z")
    order, verified = verify_in_order(model, task, estimate, count=5)
    assert order == ranking_scores(estimate).argsort(descending=True, stable=True)[:5].tolist()
    flat = exact.values.flatten(start_dim=1)
    torch.testing.assert_close(verified.values, flat[:, order])


def test_compare_stores_curves_with_full_recall_at_full_cost(tmp_path: Path) -> None:
    model = interp.load_model("tiny-gpt2", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=0)
    sweeps = [SweepRequest("attn_out"), SweepRequest("head_q")]
    comparison = compare(model, task, sweeps, ["atp", "atp+qk", "atp*", "atp*-unsigned"], top_k=4)
    table = comparison.recall
    assert table is not None
    for (component, method, ranking, curve), rows in table.groupby(["component", "method", "ranking", "curve"]):
        if curve == "ranking":
            assert rows["recall"].iloc[-1] == 1.0, (component, method, ranking)
            assert rows["recall"].is_monotonic_increasing
    star = comparison.estimates["atp*"]["attn_out"]
    first = table[(table.method == "atp*") & (table.component == "attn_out") & (table.curve == "ranking")]
    assert set(first["ranking"]) == {"scores"} and first["cost"].iloc[0] == forward_equivalents(star.cost)
    assert set(table[table.method == "atp"]["ranking"]) == {"signed", "unsigned"}
    assert (table.curve == "bound").any() and (table.curve == "exhaustive").any()
    summary = recall_summary(table, 4)
    assert (summary["verified_for_full_recall"] <= comparison.exact["attn_out"].values[0].numel()).all()
    run = record(comparison, RunStore(tmp_path), {}, task)
    again = load_comparison(run)
    assert again.recall is not None and again.recall.equals(table)
    figure = recall_cost(again.recall, "head_q")
    names = [trace.name for trace in figure.data]
    assert any(name.startswith("false-negative bound") for name in names)
    assert "atp (signed)" in names and "atp (unsigned)" in names and "atp* (scores)" in names
    assert recall_table(comparison.exact, {}).query("curve != 'exhaustive'").empty
