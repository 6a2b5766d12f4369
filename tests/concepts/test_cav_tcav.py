"""CAVs and TCAV against independent references: a planted direction, finite differences, files."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.concepts import ConceptSet, Target, TokenSelector, fit_cav, read_layers, sensitivities, train_cavs
from interp.concepts.selection import range_mask
from interp.errors import InvalidArgumentError
from interp.interventions import Add
from interp.vectors import LayerVectors, load_vectors
from tests.concepts.planted import planted


@pytest.mark.parametrize("method", ["sgd", "logistic", "mean_diff"])
def test_cav_recovers_a_planted_direction(method: str) -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(24, generator=gen, dtype=torch.float64)
    w = w / w.norm()
    concept = torch.randn(1200, 24, generator=gen, dtype=torch.float64) + 3 * w
    other = torch.randn(1000, 24, generator=gen, dtype=torch.float64)
    fit = fit_cav(concept, other, method, seed=1)
    cosine = float(fit.vector @ w / fit.vector.norm())
    assert cosine > 0.95, cosine  # oriented toward the concept, not away from it
    assert fit.accuracy > 0.9 and fit.auc > 0.97
    assert fit.n_train + fit.n_test == 2000  # truncated to the smaller class: 1000 + 1000
    again = fit_cav(concept, other, method, seed=1)
    assert torch.equal(fit.vector, again.vector)  # seeded


def test_cav_on_pure_noise_is_at_chance() -> None:
    gen = torch.Generator().manual_seed(3)
    fit = fit_cav(torch.randn(300, 16, generator=gen), torch.randn(300, 16, generator=gen), "logistic", seed=0)
    assert 0.35 < fit.accuracy < 0.65 and 0.35 < fit.auc < 0.65


def test_weight_balancing_keeps_every_example() -> None:
    gen = torch.Generator().manual_seed(0)
    fit = fit_cav(torch.randn(90, 8, generator=gen) + 2, torch.randn(30, 8, generator=gen), "logistic", balance="weight")
    assert fit.n_train + fit.n_test == 120 and fit.accuracy > 0.85


def test_tcav_planted_concept_is_significant_and_a_random_one_is_not() -> None:
    w, result = planted(0, n=200)
    row = result.tests.iloc[0]
    assert row.concept_mean > 0.85 and abs(row.random_mean - 0.5) < 0.2
    assert row.p_t < 1e-4 and row.p_perm < 0.02 and row.significant
    assert row.hedges_g > 1 and row.diff_low > 0.2
    assert float(result.cav("concept").unit(0).double() @ w) > 0.85
    _, null = planted(0, n=200, concept_shift=0.0)
    assert null.tests.iloc[0].p_t > 0.05 and not null.tests.iloc[0].significant


def test_false_positive_rate_is_near_nominal() -> None:
    """A concept drawn like the random sets is rejected at about the test's level (0.05)."""
    runs = 30
    rejected_t = rejected_perm = 0
    for seed in range(runs):
        _, result = planted(100 + seed, n=100, concept_shift=0.0, n_permutations=100)
        rejected_t += result.tests.p_t[0] < 0.05
        rejected_perm += result.tests.p_perm[0] < 0.05
    # Binomial(30, 0.05): P(X >= 6) < 0.02; the shared design rejects about a third of such tests
    assert rejected_t <= 5 and rejected_perm <= 5, (rejected_t, rejected_perm)


def _finite_difference(model, target, layer, selector, vector, eps=1e-2):
    # the tiny models keep some float32 buffers (rotary tables), which set a noise floor near 1e-7: a
    # central difference with a step of 0.01 (on unit directions) stays well above it; its O(eps^2) error is small
    prompts = list(target.prompts)
    batch = model.to_tokens(prompts)
    ranges = selector.ranges(model, prompts, target.marks)
    mask = range_mask(ranges, batch.lengths.cpu(), batch.shape[1]).to(model.dtype)
    site = f"blocks.{layer}.hook_resid_post"
    values = []
    for sign in (1, -1):
        add = Add(site=site, vector=mask[:, :, None] * vector.to(model.dtype), scale=sign * eps)
        logits = model.run(batch, [add])
        values.append(target.values(logits[:, -1], torch.arange(len(prompts))))
    return (values[0] - values[1]) / (2 * eps)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("selector", ["last", "mean", "marked"])
def test_directional_derivative_equals_a_finite_difference(name: str, selector: str) -> None:
    model = interp.load_model(name, dtype=torch.float64)
    prompts = ("the cat sat on the mat", "a dog", "my red house is big and old")
    target = Target(prompts, torch.tensor([5, 9, 11]), torch.tensor([7, 3, 2]), "logit_diff", marks=("cat", "dog", "red"))
    choose = TokenSelector(selector)
    sens = sensitivities(model, target, "resid_post", [0, 2], choose, batch_size=2)
    direction = torch.randn(model.dims.d_model, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cavs = LayerVectors("resid_post", (0, 2), torch.stack([direction, -direction]), "test")
    derivative = sens.derivatives(cavs)
    for row, layer in enumerate((0, 2)):
        unit = cavs.unit(layer)
        expected = _finite_difference(model, target, layer, choose, unit)
        torch.testing.assert_close(derivative[row], expected, rtol=5e-3, atol=2e-5)
    assert torch.allclose(derivative[0], (sens.grads[0] * direction / direction.norm()).sum(-1))


def test_selectors_pick_the_tokens_they_name() -> None:
    model = interp.load_model("tiny-llama")
    prompts = ["the cat sat", "a dog ran home"]
    lengths = [len(model.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert TokenSelector("last").ranges(model, prompts) == [(n - 1, n) for n in lengths]
    assert TokenSelector("mean").ranges(model, prompts) == [(0, n) for n in lengths]
    marked = TokenSelector("marked").ranges(model, ["the cat sat", "a dog ran home"], ["cat", "dog"])
    for (start, stop), prompt, mark in zip(marked, prompts, ["cat", "dog"], strict=True):
        ids = model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert stop == start + 1 and model.tokenizer.decode(ids[:stop]).endswith(mark)
    with pytest.raises(InvalidArgumentError, match="marked substring"):
        TokenSelector("marked").ranges(model, prompts)
    with pytest.raises(InvalidArgumentError, match="unknown"):
        TokenSelector("first")


def test_cavs_for_all_layers_save_and_load(tmp_path) -> None:
    model = interp.load_model("tiny-llama")
    concept = ConceptSet("c", [f"le chat numero {i} est la" for i in range(12)])
    other = ConceptSet("r", [f"the dog number {i} is here" for i in range(12)])
    select = TokenSelector("mean")
    pos = read_layers(model, concept.prompts, "resid_post", [0, 1, 2], select)
    neg = read_layers(model, other.prompts, "resid_post", [0, 1, 2], select)
    manual = model.run_with_cache(list(concept.prompts[:1]), sites=["blocks.1.hook_resid_post"])[1]
    torch.testing.assert_close(pos[1, 0], manual["blocks.1.hook_resid_post"][0].mean(0), rtol=1e-5, atol=1e-5)
    cavs = train_cavs(pos, neg, "resid_post", [0, 1, 2], "logistic", seed=4, meta={"concept": "c"})
    assert cavs.meta["accuracy"] == [1.0, 1.0, 1.0]
    loaded = load_vectors(cavs.save(tmp_path / "cav"))
    assert torch.equal(loaded.vectors, cavs.vectors) and loaded.meta["auc"] == cavs.meta["auc"]
    assert loaded.method == "cav-logistic" and loaded.token_norms is not None


def test_bad_inputs_are_named() -> None:
    with pytest.raises(InvalidArgumentError, match="classifier"):
        fit_cav(torch.randn(10, 4), torch.randn(10, 4), "svm")
    with pytest.raises(InvalidArgumentError, match="at least 4"):
        fit_cav(torch.randn(3, 4), torch.randn(10, 4))
    with pytest.raises(InvalidArgumentError, match="wrong-token"):
        Target(("a",), torch.tensor([1]), None, "logit_diff")
    with pytest.raises(InvalidArgumentError, match="disjoint design"):
        planted(0, n=30)


def test_task_metrics_and_the_causal_check() -> None:
    from interp.concepts import steer_effect
    from interp.tasks import get_metric, ioi_task

    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, n=4, seed=0)
    target = Target.from_task(task, "logit_diff")
    sens = sensitivities(model, target, "resid_post", [1], TokenSelector("last"), batch_size=3)
    expected = get_metric("logit_diff")(model.run(task.clean)[:, -1], task)
    torch.testing.assert_close(sens.values, expected.cpu())
    direction = torch.randn(1, model.dims.d_model, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cavs = LayerVectors("resid_post", (1,), direction, "test", token_norms=torch.tensor([2.0]))
    still = steer_effect(model, cavs, target, strength=0.0).table.iloc[0]
    assert still.delta == 0 and abs(still.kl) < 1e-12
    moved = steer_effect(model, cavs, target, strength=3.0).table.iloc[0]
    assert moved.kl > 0 and moved.added_norm == pytest.approx(6.0)
    raw = steer_effect(model, cavs, target, strength=0.5, unit="raw").table.iloc[0]
    assert raw.added_norm == pytest.approx(0.5) and 0 < raw.kl < moved.kl  # raw strength: along the unit CAV
