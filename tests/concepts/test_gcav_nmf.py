"""GCAV on planted per-layer CAVs, and NMF concepts: planted parts, fidelity through the hook layer."""

from __future__ import annotations

import torch

import interp
from interp.concepts import Sensitivities, Target, TokenSelector, read_layers
from interp.concepts.gcav import gcav, straight_through_tcav
from interp.concepts.nmf import nmf_concepts, prediction_fidelity, top_examples
from interp.vectors import LayerVectors
from tests.conftest import DEVICE


def test_gcav_aligns_noisy_layer_cavs_and_keeps_them_close() -> None:
    gen = torch.Generator().manual_seed(0)
    layers, d = 4, 16
    w = torch.randn(d, generator=gen)
    concept = LayerVectors("resid_post", tuple(range(layers)), w + 1.5 * torch.randn(layers, d, generator=gen), "x")
    negatives = [LayerVectors("resid_post", tuple(range(layers)), torch.randn(layers, d, generator=gen), "x") for _ in range(4)]
    grads = (w + torch.randn(layers, 30, d, generator=gen)).double()
    result = gcav({"c": concept}, negatives, Sensitivities("resid_post", tuple(range(layers)), grads, torch.zeros(30)),
                  dim=8, steps=100, fusion_steps=50)
    assert (result.table.cos > 0.9).all()  # the decoded global CAV stays near each layer's CAV
    assert result.cavs["c"].layers == (0, 1, 2, 3) and result.cavs["c"].method == "gcav"
    assert result.table.tcav_global.min() > 0.85  # and still reads the planted sensitivity
    assert set(result.variance.columns) == {
        "concept", "variance_before", "variance_after", "run_variance_before", "run_variance_after"
    }


def test_gcav_lowers_the_variance_across_layers_when_layer_cavs_are_noisy_copies_of_one_direction() -> None:
    # every run's CAV at every layer is w plus independent noise, and the target's gradients lean on
    # w at every layer, so the TCAV score differs from layer to layer only through the noise: the
    # fusion (3 x variance against 1 x similarity) should take most of that spread away
    layers, d, runs, n = (0, 1, 2, 3), 32, 6, 200
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        w = torch.nn.functional.normalize(torch.randn(d, generator=gen), dim=0)
        concept = [LayerVectors("resid_post", layers, w + torch.randn(4, d, generator=gen) / d**0.5, "x") for _ in range(runs)]
        negatives = [LayerVectors("resid_post", layers, torch.randn(4, d, generator=gen), "x") for _ in range(runs)]
        grads = (0.15 * w + torch.randn(4, n, d, generator=gen) / d**0.5).double()
        sens = Sensitivities("resid_post", layers, grads, torch.zeros(n))
        result = gcav({"c": concept}, negatives, sens, dim=16, steps=100, fusion_steps=60, seed=seed)
        v = result.variance.iloc[0]
        assert v.run_variance_after < 0.5 * v.run_variance_before and v.variance_after < v.variance_before
        assert result.table.cos.min() > 0.75  # while the decoded vectors stay near the per-layer CAVs
        assert len(result.runs["c"]) == runs and result.cavs["c"] is result.runs["c"][0]


def test_straight_through_tcav_is_the_hard_score_with_the_soft_gradient() -> None:
    cos = torch.tensor([[0.3, -0.02, 0.001, -0.4, 0.05]], dtype=torch.float64, requires_grad=True)
    value = straight_through_tcav(cos, 20.0)
    assert value.item() == 3 / 5  # the sign count, not the soft mean
    (grad,) = torch.autograd.grad(value.sum(), cos)
    soft = torch.sigmoid(20.0 * cos.detach())
    torch.testing.assert_close(grad, 20.0 * soft * (1 - soft) / 5, rtol=1e-12, atol=0)


def test_nmf_finds_planted_parts_and_reconstructs() -> None:
    gen = torch.Generator().manual_seed(0)
    parts = torch.rand(3, 20, generator=gen) * (torch.rand(3, 20, generator=gen) > 0.6)
    weights = torch.rand(200, 3, generator=gen)
    acts = (weights @ parts - 0.5).double()  # signed: NMF sees it shifted by the minimum
    concepts = nmf_concepts(acts, "blocks.0.hook_resid_post", n_components=3, seed=0)
    assert concepts.r2 > 0.99
    best = torch.nn.functional.cosine_similarity(concepts.components[:, None], parts.double()[None], dim=-1).max(0).values
    assert (best > 0.95).all()
    table = top_examples(concepts, [f"p{i}" for i in range(200)], top=2)
    assert len(table) == 6 and (table.groupby("component").weight.diff().dropna() <= 0).all()
    torch.testing.assert_close(concepts.reconstruct(acts[:5]), acts[:5], atol=0.05, rtol=0)


def test_nmf_and_gcav_take_inputs_on_the_model_device() -> None:
    """On ``INTERP_TEST_DEVICE`` (CUDA in the GPU run): both factorise on CPU, so activations, CAVs and
    gradients on the model's device give the CPU results exactly."""
    gen = torch.Generator().manual_seed(1)
    acts = torch.rand(40, 12, generator=gen, dtype=torch.float64)
    cpu = nmf_concepts(acts, "blocks.0.hook_resid_post", n_components=3, seed=0)
    here = nmf_concepts(acts.to(DEVICE), "blocks.0.hook_resid_post", n_components=3, seed=0)
    assert torch.equal(here.components, cpu.components) and here.r2 == cpu.r2
    assert torch.equal(here.reconstruct(acts[:4].to(DEVICE)), cpu.reconstruct(acts[:4]))
    layers = (0, 1, 2)
    sets = [torch.randn(3, 8, generator=gen) for _ in range(3)]
    grads = torch.randn(3, 10, 8, generator=gen, dtype=torch.float64)

    def run(device: str):
        concept, *negatives = [LayerVectors("resid_post", layers, v.to(device), "x") for v in sets]
        sens = Sensitivities("resid_post", layers, grads.to(device), torch.zeros(10))
        return gcav({"c": concept}, negatives, sens, dim=4, steps=5, fusion_steps=5)

    assert run(DEVICE).table.equals(run("cpu").table)


def test_prediction_fidelity_is_exact_for_an_exact_reconstruction() -> None:
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    prompts = tuple(f"the cat number {i} sat" for i in range(8))
    target = Target(prompts, torch.full((8,), 5), torch.full((8,), 7))
    acts = read_layers(model, prompts, "resid_post", [1], TokenSelector("last"))[0]
    full = nmf_concepts(acts, "blocks.1.hook_resid_post", n_components=8, seed=0)  # rank 8 >= 8 examples
    exact = prediction_fidelity(model, full, target, 1)
    assert full.r2 > 0.999 and exact["kl"] < 1e-3 and exact["correlation"] > 0.999
    rough = prediction_fidelity(model, nmf_concepts(acts, "blocks.1.hook_resid_post", 1, seed=0), target, 1)
    assert rough["kl"] > exact["kl"] and rough["mean_abs_change"] > exact["mean_abs_change"]
