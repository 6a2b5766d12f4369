"""Per-step KL, entropy, perplexity and scores of steered generation, checked against direct computations."""

from __future__ import annotations

import math

import pytest

import interp
from interp.steering import ContrastSet, TokenScore, VectorScore, evaluate, extract_vectors, steer, strength_sweep
from tests.steering.conftest import PROMPTS


@pytest.fixture(scope="module")
def vectors(model: interp.Model, contrast: ContrastSet) -> interp.vectors.LayerVectors:
    return extract_vectors(model, contrast, "resid_post", [0, 1, 2])


def test_step_measurements_match_a_direct_computation(model: interp.Model, vectors) -> None:
    plan = steer(vectors, 0.8, "norm", layers=[1])
    score = TokenScore.from_words(model, [" Mary", " John"], [" book"])
    run = evaluate(model, PROMPTS, plan, max_new_tokens=5, score=score)
    generation = run.generation
    for row in range(len(PROMPTS)):
        length = int(generation.prompt_lengths[row])
        sequence = generation.tokens[row][generation.attention_mask[row].bool()]
        for step in range(5):
            prefix = sequence[: length + step].unsqueeze(0)
            p = model.run(prefix, plan)[0, -1].double().log_softmax(-1)
            q = model.run(prefix)[0, -1].double().log_softmax(-1)
            kl = float((p.exp() * (p - q)).sum())
            assert run.kl[row, step].item() == pytest.approx(kl, rel=1e-3, abs=1e-5)
            assert run.entropy[row, step].item() == pytest.approx(float(-(p.exp() * p).sum()), rel=1e-4)
            assert run.nll[row, step].item() == pytest.approx(float(-q[sequence[length + step]]), rel=1e-4)
            expected = float(p[list(score.positive)].logsumexp(0) - p[list(score.negative)].logsumexp(0))
            assert run.score[row, step].item() == pytest.approx(expected, rel=1e-3, abs=1e-4)
    assert run.perplexity[0].item() == pytest.approx(math.exp(run.nll[0].mean().item()), rel=1e-5)
    assert run.summary()["kl"] > 0.01


def test_unsteered_run_has_zero_kl(model: interp.Model) -> None:
    run = evaluate(model, PROMPTS, [], max_new_tokens=4)
    assert run.kl.max() < 1e-6


def test_sweep_table_grows_kl_with_strength_and_keeps_samples(model: interp.Model, vectors) -> None:
    result = strength_sweep(model, vectors, PROMPTS, [0.0, 0.3, 1.5], layers=[1, 2], max_new_tokens=4, score=VectorScore(vectors, 1))
    table = result.table
    assert list(table.columns[:4]) == ["layer", "strength", "unit", "raw_strength"]
    assert len(table) == 6 and len(result.samples) == 12
    for layer in (1, 2):
        rows = table[table.layer == layer].sort_values("strength")
        assert rows.kl.iloc[0] < 1e-6 and rows.kl.iloc[2] > rows.kl.iloc[1] > 0
        assert rows.score_delta.iloc[0] == 0
    zero = result.samples[result.samples.strength == 0]
    assert (zero.baseline == zero.steered).all()
    assert set(result.steps.columns) >= {"layer", "strength", "row", "step", "token", "kl", "entropy", "nll", "score"}
