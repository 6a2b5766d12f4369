"""Parity with captum's TCAV on a fixed-length case (captum flattens every position, so only
prompts of one token length work there): the same CAVs and the same sign_count and magnitude."""

from __future__ import annotations

import random

import pytest
import torch

import interp
from interp.concepts import Target, TokenSelector, fit_cav, read_layers, sensitivities, tcav_scores, train_cavs

captum_concept = pytest.importorskip("captum.concept")

LENGTH, LAYER, ANSWER = 6, 0, 1


def _prompts(model, words, n, seed):
    """``n`` distinct prompts of exactly LENGTH tokens made of ``words``."""
    rng, found = random.Random(seed), []
    while len(found) < n:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        if len(model.tokenizer(text, add_special_tokens=False)["input_ids"]) == LENGTH and text not in found:
            found.append(text)
    return found


class LastBlockClassifier(captum_concept.Classifier):
    """Fits our CAV on the last position of captum's flattened activations; the CAV sits in that
    position's block of captum's (positions x d_model) space, zeros elsewhere."""

    def __init__(self, d_model: int) -> None:
        self.d_model, self.vector, self.labels = d_model, None, None

    def train_and_eval(self, dataloader, **kwargs):
        xs, ys = zip(*dataloader)
        x, y = torch.cat(xs), torch.cat(ys)
        last = x.reshape(len(x), -1, self.d_model)[:, -1]
        self.labels = sorted(set(y.tolist()))
        fit = fit_cav(last[y == self.labels[0]], last[y == self.labels[1]], "mean_diff", seed=3)
        full = torch.zeros(x.shape[1])
        full[-self.d_model :] = (fit.vector / fit.vector.norm()).float()
        self.vector = full
        return {"accs": torch.tensor(fit.accuracy)}

    def weights(self):
        return torch.stack([self.vector, -self.vector])

    def classes(self):
        return self.labels


class FinalLogits(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.hf = model.hf

    def forward(self, ids):
        return self.hf(input_ids=ids).logits[:, -1]


def test_scores_match_captum_tcav(tmp_path) -> None:
    model = interp.load_model("tiny-llama")
    assert not model.prepend_bos
    concept_words = ["le", "la", "chat", "chien", "maison", "est", "sur", "une"]
    random_words = ["the", "a", "cat", "dog", "house", "is", "on", "big", "small", "red"]
    concept = _prompts(model, concept_words, 24, 0)
    other = _prompts(model, random_words, 24, 1)
    target = _prompts(model, random_words + concept_words, 16, 2)
    ids = lambda texts: model.to_tokens(texts).input_ids

    loader = lambda texts: torch.utils.data.DataLoader(ids(texts), batch_size=8)
    sets = [captum_concept.Concept(0, "concept", loader(concept)), captum_concept.Concept(1, "random", loader(other))]
    wrapper = FinalLogits(model)
    classifier = LastBlockClassifier(model.dims.d_model)
    tcav = captum_concept.TCAV(wrapper, [f"hf.model.layers.{LAYER}"], classifier=classifier, save_path=str(tmp_path))
    captum_scores = tcav.interpret(ids(target), experimental_sets=[sets], target=ANSWER)
    layer_scores = next(iter(captum_scores.values()))[f"hf.model.layers.{LAYER}"]

    select = TokenSelector("last")
    pos = read_layers(model, concept, "resid_post", [LAYER], select)
    neg = read_layers(model, other, "resid_post", [LAYER], select)
    cavs = train_cavs(pos, neg, "resid_post", [LAYER], "mean_diff", seed=3)
    torch.testing.assert_close(cavs.unit(LAYER), classifier.vector[-model.dims.d_model :], rtol=1e-4, atol=1e-6)
    sens = sensitivities(model, Target(tuple(target), torch.full((16,), ANSWER), metric="logit"), "resid_post", [LAYER], select)
    sign, magnitude = tcav_scores(sens.derivatives(cavs))
    assert float(sign[0]) == pytest.approx(float(layer_scores["sign_count"][0]), abs=1e-12)
    assert float(magnitude[0]) == pytest.approx(float(layer_scores["magnitude"][0]), rel=1e-4, abs=1e-6)
    assert 0 < float(sign[0]) < 1  # a case where the signs are mixed, so the count is informative
