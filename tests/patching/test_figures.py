"""What the patching figures draw: the quantity they name, on a scale centred on its no-effect value.

A synthetic result with known numbers (no model): clean metric 3, corrupt 1 on every example, so the
normalised value of a patched metric ``m`` is ``(m - 1) / 2`` and every quantity is known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.patching.result import PatchingResult
from interp.viz.comparison import difference
from interp.viz.latents import activation_histogram, density_histogram, logit_effects, training_curves
from interp.viz.patching import compare, example_drilldown, heatmap


def synthetic(direction: str, seed: int = 0) -> PatchingResult:
    generator = torch.Generator().manual_seed(seed)
    values = 1.0 + 2.0 * torch.rand(5, 3, 4, generator=generator, dtype=torch.float64)
    return PatchingResult(
        sweep="resid_pre", axes=("layer", "pos"), coords={"layer": [0, 1, 2], "pos": [0, 1, 2, 3]}, values=values,
        clean=torch.full((5,), 3.0, dtype=torch.float64), corrupt=torch.full((5,), 1.0, dtype=torch.float64),
        metric="logit_diff", direction=direction, position_labels=["S1", "IO", "S2", "END"], positions="named",
    )


@pytest.mark.parametrize(("direction", "centre"), [("denoising", 0.0), ("noising", 1.0)])
def test_normalised_heatmap_is_centred_on_no_effect(direction: str, centre: float) -> None:
    result = synthetic(direction)
    trace = heatmap(result).data[0]
    expected = ((result.values - 1.0) / 2.0).mean(0).numpy()
    np.testing.assert_allclose(trace.z, expected, atol=1e-12)
    assert trace.zmid == centre
    assert trace.zmax - centre == pytest.approx(centre - trace.zmin)
    assert trace.zmax - centre == pytest.approx(float(np.abs(expected - centre).max()))
    assert list(trace.x) == ["S1", "IO", "S2", "END"]
    figure = heatmap(result)
    assert ("sufficient" if direction == "denoising" else "necessary") in figure.layout.title.text
    assert figure.layout.xaxis.title.text == "named position"


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_effect_and_raw_heatmaps(direction: str) -> None:
    result = synthetic(direction)
    base = 1.0 if direction == "denoising" else 3.0
    effect = heatmap(result, quantity="effect").data[0]
    np.testing.assert_allclose(effect.z, (result.values - base).mean(0).numpy(), atol=1e-12)
    assert effect.zmid == 0.0 and effect.zmin == -effect.zmax
    raw = heatmap(result, normalized=False).data[0]
    np.testing.assert_allclose(raw.z, result.values.mean(0).numpy(), atol=1e-12)
    assert raw.zmid == pytest.approx(base)  # a patch that changes nothing leaves the base metric
    normalised_effect = result.quantity("normalized_effect")
    torch.testing.assert_close(normalised_effect, (result.values - base) / 2.0)


def test_compare_and_difference_use_effects_across_directions() -> None:
    a, b = synthetic("denoising", 1), synthetic("noising", 2)
    figure = compare(a, b)
    left, right = figure.data
    np.testing.assert_allclose(left.z, ((a.values - 1.0) / 2.0).mean(0).numpy(), atol=1e-12)
    np.testing.assert_allclose(right.z, ((b.values - 3.0) / 2.0).mean(0).numpy(), atol=1e-12)
    assert left.zmid == right.zmid == 0.0 and left.zmax == right.zmax
    delta = difference(a, b, names=("A", "B")).data[0]
    np.testing.assert_allclose(delta.z, right.z - left.z, atol=1e-12)
    with pytest.raises(Exception, match="no-effect value"):
        compare(a, b, quantity="normalized")


def test_drilldown_labels_its_quantity_and_each_examples_token() -> None:
    result = synthetic("denoising")
    tokens = [f"{i}: John" for i in range(5)]
    figure = example_drilldown(result, {"layer": 1, "pos": 2}, tokens=tokens)
    np.testing.assert_allclose(figure.data[0].y, ((result.values[:, 1, 2] - 1.0) / 2.0).numpy(), atol=1e-12)
    assert "normalised logit_diff" in figure.layout.yaxis.title.text
    assert list(figure.layout.xaxis.ticktext) == [f"{i}<br>{t}" for i, t in enumerate(tokens)]
    assert "pos=S2" in figure.layout.title.text


def test_sae_figures_have_readable_axes() -> None:
    histogram = activation_histogram([0, 3, 5, 0], [0.01, 0.1, 1.0, 10.0, 100.0])
    assert histogram.layout.xaxis.type == "log" and histogram.layout.xaxis.dtick == 1
    density = density_histogram([-2.0, -3.0, -10.0], chosen=-3.0, n_tokens=1234)
    assert density.layout.shapes[0].x0 == -3.0 and "1,234" in density.layout.title.text
    effects = logit_effects([" Paris", "\n"], [2.0, 1.0], ["x"], [-1.0])
    assert list(effects.data[0].y) == ["\u21b5", "\u2423Paris"]
    import pandas as pd

    curves = training_curves(pd.DataFrame({"sae": ["a", "a"], "step": [1, 2], "l0": [3.0, 2.0], "fvu": [0.5, 0.4]}))
    assert curves.layout.xaxis.title.text == "training step" and "L0" in curves.layout.yaxis.title.text
