"""On the default model, a sentiment vector from the shipped contrast set moves the behaviour it was built for."""

from __future__ import annotations

import pytest

import interp
from interp.steering import TokenScore, evaluate, extract_vectors, load_contrast, steer

POSITIVE = [" good", " great", " wonderful", " amazing", " excellent", " beautiful", " perfect", " happy", " nice", " best"]
NEGATIVE = [" bad", " terrible", " awful", " horrible", " boring", " worst", " poor", " sad", " disappointing", " ugly"]
PROMPTS = ["I think the weather today is", "My neighbour told me that the film", "Yesterday I went to the market and it was"]
LAYER, STRENGTH = 15, 0.25  # a quarter of the layer's median token norm


@pytest.mark.slow
def test_sentiment_vector_moves_the_score_at_a_reported_kl(smollm: interp.Model) -> None:
    vectors = extract_vectors(smollm, load_contrast("data/steering/sentiment.jsonl"), "resid_post", [LAYER])
    assert vectors.meta["pairs"] >= 100
    score = TokenScore.from_words(smollm, POSITIVE, NEGATIVE)
    runs = {
        strength: evaluate(smollm, PROMPTS, steer(vectors, strength, "norm"), max_new_tokens=3, score=score).summary()
        for strength in (0.0, STRENGTH, -STRENGTH)
    }
    up = runs[STRENGTH]["score"] - runs[0.0]["score"]
    down = runs[-STRENGTH]["score"] - runs[0.0]["score"]
    print(f"\nlayer {LAYER}, strength ±{STRENGTH} x median norm: score {runs[0.0]['score']:.2f} -> "
          f"+{up:.2f} / {down:.2f} at KL {runs[STRENGTH]['kl']:.3f} / {runs[-STRENGTH]['kl']:.3f}")
    assert runs[0.0]["kl"] < 1e-6
    assert up > 1.0 and down < -1.0  # log-odds of positive vs negative words, per generated step
    assert 0 < runs[STRENGTH]["kl"] < 2.0 and 0 < runs[-STRENGTH]["kl"] < 2.0
