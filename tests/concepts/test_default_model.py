"""On the default model: a shipped concept (French) changes the answer to a yes/no question in a
way random text does not, at the layers named below, and a random concept does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from interp.concepts import ConceptSet, TokenSelector, load_concept, load_target, run_tcav

DATA = Path(__file__).resolve().parents[2] / "data" / "concepts"
LAYERS = [3, 6]


@pytest.mark.slow
def test_french_is_significant_and_a_random_concept_is_not(smollm) -> None:
    pool = load_concept(DATA / "random.jsonl")
    random_concept = ConceptSet("random_text", pool.prompts[:120])
    rest = ConceptSet("pool", pool.prompts[120:])
    french = load_concept(DATA / "french.jsonl")
    target = load_target(smollm, DATA / "yes_no.jsonl")
    result = run_tcav(
        smollm, [french, random_concept], rest, target, layers=LAYERS, selector=TokenSelector("mean"),
        n_random=8, n_permutations=500, seed=0,
    )
    tests = result.tests.set_index(["concept", "layer"])
    print(tests[["concept_mean", "random_mean", "p_t", "p_perm", "p_bh", "accuracy"]])
    significant_french = [layer for layer in LAYERS if tests.loc[("french", layer), "p_bh"] < 0.05]
    assert significant_french == [3, 6]  # BH-adjusted p about 0.036 and 0.045 (seed 0)
    assert (tests.loc["french"].accuracy > 0.9).all()  # French is easy to read at every layer
    assert not any(tests.loc[("random_text", layer), "p_bh"] < 0.05 for layer in LAYERS)
