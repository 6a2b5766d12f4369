"""The patching engine against independent references.

The reference is the plain definition: one full forward of the base prompts per cell, with the
source activation patched in through ordinary :class:`interp.Patch` interventions (no prefix reuse,
no skipped blocks, no row groups, full logits). In float64 on tiny models the engine must agree to
1e-9; on the default model in float32 to 1e-4.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import interp
from interp import Patch, Zero
from interp.patching import Cell, patch_cells, patch_sweep
from interp.cells import selection_mask
from interp.interventions import MaskedPatch
from interp.tasks import get_metric, ioi_task

SWEEP_SUBSETS = {
    "resid_pre": {},
    "resid_mid": {"layers": [1]},
    "resid_post": {},
    "attn_out": {"layers": [0, 2]},
    "mlp_out": {"layers": [1]},
    "head_z": {},
    "head_q": {"layers": [1]},
    "head_k": {"layers": [2]},
    "head_v": {"layers": [0]},
    "head_z_by_pos": {"layers": [1], "positions": [-1, -3, -6]},
    "head_k_by_pos": {"layers": [2], "positions": [-2, -5]},
    "head_pattern": {"layers": [1, 2]},
    "neuron": {"layers": [1], "neurons": [0, 5, 77]},
}


def naive_values(model: interp.Model, task, cells: list[tuple[Cell, ...]], direction: str, metric) -> torch.Tensor:
    """One full forward per cell group with plain Patch interventions."""
    if direction == "denoising":
        base, base_interventions, source, source_interventions = task.corrupt, list(task.corrupt_interventions), task.clean, []
    else:
        base, base_interventions, source, source_interventions = task.clean, [], task.corrupt, list(task.corrupt_interventions)
    _, cache = model.run_with_cache(source, sites=model.sites, interventions=source_interventions)
    rows = []
    for group in cells:
        patches = []
        for cell in group:
            site = model.site(cell.site)
            if cell.neurons is None:
                patches.append(Patch(site=cell.site, source=cache[cell.site], positions=cell.positions, heads=cell.heads))
            else:
                mask = selection_mask(cell, site, cache[cell.site].shape, 0).unsqueeze(0)
                patches.append(MaskedPatch(site=cell.site, source=cache[cell.site], mask=mask))
        logits = model.run(base, [*base_interventions, *patches])
        rows.append(metric(logits[:, -1], task))
    return torch.stack(rows).T.cpu()  # results are CPU tensors whatever the model's device


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_engine_equals_one_forward_per_cell(tiny64: interp.Model, direction: str) -> None:
    task = ioi_task(tiny64, n=4, seed=1)
    metric = get_metric("logit_diff")
    for sweep, subset in SWEEP_SUBSETS.items():
        if sweep == "resid_mid" and tiny64.arch.parallel_residual:
            continue
        result = patch_sweep(tiny64, task, sweep, direction=direction, max_rows=8, **subset)
        cells = [((Cell(**c) if isinstance(c, dict) else c),) for c in _cells_of(tiny64, task, sweep, subset)]
        reference = naive_values(tiny64, task, [g for g in cells], direction, metric)
        torch.testing.assert_close(result.values.reshape(len(task), -1), reference, rtol=0, atol=1e-9, msg=sweep)
        assert result.cost.flops < result.cost.naive_flops


def _cells_of(model, task, sweep, subset):
    from interp.cells import sweep_groups

    groups, _, _ = sweep_groups(model, task, sweep, **subset)
    return [g[0] for g in groups]


def test_endpoints_recover_clean_and_corrupt_metrics(tiny64: interp.Model) -> None:
    task = ioi_task(tiny64, n=4, seed=2)
    last = tiny64.dims.n_layers - 1
    whole_stream = [Cell(site="blocks.0.hook_resid_pre"), Cell(site=f"blocks.{last}.hook_resid_post")]
    denoised = patch_cells(tiny64, task, whole_stream, direction="denoising")
    noised = patch_cells(tiny64, task, whole_stream, direction="noising")
    for column in range(2):
        torch.testing.assert_close(denoised.values[:, column], denoised.clean, rtol=0, atol=1e-10)
        torch.testing.assert_close(noised.values[:, column], noised.corrupt, rtol=0, atol=1e-10)
        torch.testing.assert_close(denoised.normalized()[:, column].mean(), torch.tensor(1.0, dtype=torch.float64))
    assert not torch.allclose(denoised.clean, denoised.corrupt)


def test_row_grouping_and_prefix_reuse_do_not_change_numbers() -> None:
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=3)
    reference = patch_sweep(model, task, "head_z_by_pos", max_rows=3, prefix_reuse=False, positions=[-1, -4])
    grouped = patch_sweep(model, task, "head_z_by_pos", max_rows=300, prefix_reuse=True, positions=[-1, -4])
    torch.testing.assert_close(grouped.values, reference.values, rtol=0, atol=1e-12)
    assert grouped.cost.forward_passes < reference.cost.forward_passes
    assert grouped.cost.flops < reference.cost.flops


def test_path_patches_and_embeddings_with_noise_corruption() -> None:
    model = interp.load_model("tiny-gpt2", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=4, corruption="noise")
    assert task.corrupt_interventions, "noise corruption is an intervention on the embeddings"
    cells = [
        (Cell(site="hook_embed", positions=(2,)),),
        (Cell(site="blocks.0.attn.hook_z", heads=(1,)), Cell(site="blocks.2.hook_mlp_out", positions=(task.clean.shape[1] - 1,))),
        (Cell(site="blocks.1.hook_resid_post", positions=(3, 4)),),
        # two names of the same tensor (block 1's input) in one group: one entry patch
        (Cell(site="blocks.0.hook_resid_post", positions=(3,)), Cell(site="blocks.1.hook_resid_pre", positions=(5,))),
    ]
    metric = get_metric("logit_diff")
    for direction in ("denoising", "noising"):
        result = patch_cells(model, task, cells, direction=direction)
        torch.testing.assert_close(result.values, naive_values(model, task, cells, direction, metric), rtol=0, atol=1e-9)


def test_corruption_interventions_inside_blocks_are_applied_downstream_of_the_patch() -> None:
    """A base intervention in block 1 must act in every patched forward that reaches block 1."""
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = dataclasses.replace(
        ioi_task(model, n=3, seed=4), corrupt_interventions=(Zero(site="blocks.1.attn.hook_z", heads=[0]),)
    )
    cells = [
        (Cell(site="blocks.1.hook_resid_pre", positions=(4,)),),
        (Cell(site="blocks.0.attn.hook_z", heads=(1,)),),
        (Cell(site="blocks.1.attn.hook_z", heads=(0,)),),
        (Cell(site="blocks.2.hook_resid_pre", positions=(5,)),),
        (Cell(site="blocks.2.hook_mlp_out", positions=(task.clean.shape[1] - 1,)),),
    ]
    metric = get_metric("logit_diff")
    for direction in ("denoising", "noising"):
        result = patch_cells(model, task, cells, direction=direction)
        torch.testing.assert_close(result.values, naive_values(model, task, cells, direction, metric), rtol=0, atol=1e-9)


def test_noop_rows_take_the_unpatched_metric_without_a_forward() -> None:
    model = interp.load_model("tiny-qwen2", dtype=torch.float64)
    task = ioi_task(model, n=4, seed=5)
    differs = (task.clean.input_ids != task.corrupt.input_ids) & task.clean.attention_mask.bool()
    first_difference = int(differs.any(0).nonzero()[0])
    assert first_difference > 0, "the IOI pairs share a prefix"
    skipped = patch_sweep(model, task, "resid_pre")
    full = patch_sweep(model, task, "resid_pre", skip_noop_rows=False)
    torch.testing.assert_close(skipped.values, full.values, rtol=0, atol=1e-12)
    assert full.cost.noop_rows == 0 and skipped.cost.noop_rows > 0
    assert skipped.cost.flops < full.cost.flops and skipped.cost.naive_flops == full.cost.naive_flops
    # a shared-prefix position: every layer's patch is the identity, exactly the corrupt run
    for layer in range(model.dims.n_layers):
        assert torch.equal(skipped.values[:, layer, first_difference - 1], skipped.corrupt)
    # patching a site with its own value is skipped for every example
    own = patch_cells(model, dataclasses.replace(task, clean=task.corrupt), [Cell(site="blocks.1.attn.hook_z")])
    assert own.cost.forward_passes == 2 and own.cost.noop_rows == len(task)
    assert torch.equal(own.values[:, 0], own.corrupt)


def test_bad_cells_are_clear_errors() -> None:
    model = interp.load_model("tiny-llama")
    task = ioi_task(model, n=2)
    with pytest.raises(interp.InterventionError, match="unknown sweep"):
        patch_sweep(model, task, "resid_pree")
    with pytest.raises(interp.InterventionError, match=r"layer \[7\] out of range"):
        patch_sweep(model, task, "resid_pre", layers=[7])
    with pytest.raises(interp.UnknownSiteError):
        patch_cells(model, task, [Cell(site="blocks.0.hook_resid_pree")])
    with pytest.raises(interp.InterventionError, match="downstream of every block"):
        patch_cells(model, task, [Cell(site="logits")])


def test_result_tables_and_normalisation() -> None:
    model = interp.load_model("tiny-llama")
    task = ioi_task(model, n=4)
    result = patch_sweep(model, task, "resid_pre", layers=[0, 2], positions=[-1, -2, -3])
    assert result.values.shape == (4, 2, 3)
    frame = result.to_frame()
    assert len(frame) == 4 * 2 * 3 and list(frame.columns) == ["example", "layer", "pos", "value", "normalized"]
    row = frame[(frame.example == 1) & (frame.layer == 2) & (frame.pos == result.coords["pos"][0])].iloc[0]
    assert row.value == pytest.approx(float(result.values[1, 1, 0]))
    expected = (result.values[1, 1, 0] - result.corrupt.mean()) / (result.clean.mean() - result.corrupt.mean())
    assert row.normalized == pytest.approx(float(expected))
    summary = result.summary_frame()
    assert summary["mean"].tolist() == pytest.approx(result.values.mean(0).flatten().tolist())
    assert summary["sem"].tolist() == pytest.approx((result.values.std(0) / 2).flatten().tolist())


@pytest.mark.slow
def test_engine_equals_naive_on_default_model(smollm: interp.Model) -> None:
    task = ioi_task(smollm, n=4, seed=0)
    metric = get_metric("logit_diff")
    result = patch_sweep(smollm, task, "resid_pre", layers=[0, 14, 29], positions=[-1, -4, 3])
    cells = [(c,) for c in _cells_of(smollm, task, "resid_pre", {"layers": [0, 14, 29], "positions": [-1, -4, 3]})]
    torch.testing.assert_close(result.values.reshape(4, -1), naive_values(smollm, task, cells, "denoising", metric), rtol=0, atol=1e-4)
    heads = patch_sweep(smollm, task, "head_z", layers=[9, 20])
    cells = [(c,) for c in _cells_of(smollm, task, "head_z", {"layers": [9, 20]})]
    torch.testing.assert_close(heads.values.reshape(4, -1), naive_values(smollm, task, cells, "denoising", metric), rtol=0, atol=1e-4)


def test_sweep_selections_are_checked_never_wrapped() -> None:
    import numpy as np

    model = interp.load_model("tiny-llama")
    task = ioi_task(model, n=2)
    n = task.clean.shape[1]
    from interp.cells import sweep_groups

    _, _, coords = sweep_groups(model, task, "resid_pre", layers=[np.int64(0)], positions=[-1, 0])
    assert coords == {"layer": [0], "pos": [n - 1, 0]}
    with pytest.raises(interp.InterventionError, match=rf"position \[{n}\] out of range.*valid: 0\.\.{n - 1}"):
        sweep_groups(model, task, "resid_pre", positions=[n])
    with pytest.raises(interp.InterventionError, match=rf"position \[{-n - 1}\] out of range"):
        sweep_groups(model, task, "resid_pre", positions=[-n - 1])
    with pytest.raises(interp.InterventionError, match=r"layer 1\.9 .*not an integer"):
        patch_sweep(model, task, "resid_pre", layers=[1.9])
    with pytest.raises(interp.InterventionError, match=r"cannot select \['heads'\]"):
        patch_sweep(model, task, "resid_pre", heads=[0])
    with pytest.raises(interp.InterventionError, match=r"cannot select \['neurons'\]"):
        patch_sweep(model, task, "head_z", neurons=[0])
