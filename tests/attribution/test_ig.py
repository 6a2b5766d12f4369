"""Integrated gradients: one left step is AtP; many steps converge to exact patching (completeness)."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.attribution import SweepRequest, atp, integrated_gradients
from interp.attribution.ig import step_points
from interp.patching import Cell, patch_cells, patch_sweep
from interp.tasks import ioi_task



def test_one_left_step_is_atp() -> None:
    model = interp.load_model("tiny-qwen2", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=0, corruption="noise")
    sweeps = ["resid_pre", "head_k_by_pos", "neuron"]
    plain = atp(model, task, sweeps)
    for path in ("inputs", "activations"):
        one = integrated_gradients(model, task, sweeps, steps=1, rule="left", path=path)
        for sweep in sweeps:
            torch.testing.assert_close(one[sweep].values, plain[sweep].values, rtol=0, atol=1e-12, msg=(path, sweep))
    assert step_points(4, "midpoint") == [0.125, 0.375, 0.625, 0.875]
    with pytest.raises(ValueError, match="steps"):
        step_points(0, "left")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_many_steps_converge_to_exact_patching_of_a_cell(name: str) -> None:
    model = interp.load_model(name, dtype=torch.float64)
    task = ioi_task(model, n=3, seed=1)
    request = SweepRequest("resid_pre", layers=[1], positions=[-3])
    exact = patch_sweep(model, task, "resid_pre", layers=[1], positions=[-3])
    errors = []
    for steps in (1, 4, 32):
        estimate = integrated_gradients(model, task, request, steps=steps, path="activations")
        errors.append(float((estimate.values - exact.values).abs().max()))
        assert estimate.cost.forward_passes == 2 + steps and estimate.cost.backward_passes == steps
    atp_error = float((atp(model, task, request).values - exact.values).abs().max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3 * max(atp_error, 1e-3)


def test_completeness_over_a_whole_layer() -> None:
    """Summed over every position of a layer, IG equals patching the whole layer at once."""
    model = interp.load_model("tiny-neox", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=2)
    estimate = integrated_gradients(model, task, SweepRequest("attn_out", layers=[0]), steps=48, path="activations")
    whole = patch_cells(model, task, [Cell(site="blocks.0.hook_attn_out")])
    exact = whole.values[:, 0] - whole.corrupt
    torch.testing.assert_close(estimate.effects().sum(dim=(1, 2)), exact, rtol=1e-4, atol=1e-5)


def test_inputs_path_is_complete_at_the_embeddings() -> None:
    """On the inputs path the first residual stream moves on a straight line: IG sums to m(clean) - m(corrupt)."""
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=3)
    estimate = integrated_gradients(model, task, SweepRequest("resid_pre", layers=[0]), steps=64, path="inputs")
    total = estimate.effects().sum(dim=(1, 2))
    torch.testing.assert_close(total, estimate.clean - estimate.corrupt, rtol=1e-3, atol=1e-3)
    assert estimate.cost.forward_passes == 2 + 64
