"""Steering vectors against the anchors on the same model, data and layers, and their provenance."""

from __future__ import annotations

import json

import pytest
import torch

import interp
from interp.errors import InvalidArgumentError
from interp.steering import (
    ContrastSet,
    build_vectors,
    extract_vectors,
    from_gguf,
    from_steering_vector,
    load_contrast,
    to_steering_vector,
)
from interp.steering.methods import logistic, pca_diff
from interp.vectors import load_vectors
from tests.steering.anchors import repeng

LAYERS = [0, 1]  # repeng reads hidden_states[layer + 1], which after the last block is the final norm's output


def test_mean_difference_equals_steering_vectors(model: interp.Model, contrast: ContrastSet) -> None:
    from steering_vectors import train_steering_vector

    ours = extract_vectors(model, contrast, "resid_post", LAYERS + [2], "mean_diff")
    theirs = train_steering_vector(model.hf, model.tokenizer, [(p.positive, p.negative) for p in contrast.pairs], layers=LAYERS + [2])
    for layer in LAYERS + [2]:
        torch.testing.assert_close(ours.vector(layer), theirs.layer_activations[layer], atol=1e-5, rtol=1e-5)
        assert ours.vector(layer).norm() > 1.0


def test_pca_vector_equals_repeng_including_sign(model: interp.Model, contrast: ContrastSet) -> None:
    package = repeng()
    from repeng.extract import read_representations

    ours = extract_vectors(model, contrast, "resid_post", LAYERS, "pca_diff")
    entries = [package.DatasetEntry(positive=p.positive, negative=p.negative) for p in contrast.pairs]
    theirs = read_representations(model.hf, model.tokenizer, entries, hidden_layers=LAYERS, batch_size=1)
    for layer in LAYERS:
        torch.testing.assert_close(ours.vector(layer), torch.from_numpy(theirs[layer]), atol=1e-5, rtol=1e-5)


def test_pca_sign_follows_the_majority_of_pairs() -> None:
    generator = torch.Generator().manual_seed(0)
    neg = torch.randn(20, 6, generator=generator, dtype=torch.float64)
    shift = torch.tensor([3.0, 0, 0, 0, 0, 0], dtype=torch.float64)
    pos = neg + shift * torch.linspace(0.5, 1.5, 20, dtype=torch.float64).unsqueeze(1)
    direction = pca_diff(pos, neg)
    assert direction[0] > 0.99
    assert torch.allclose(pca_diff(neg, pos), -direction)


def test_logistic_direction_separates_the_sides_and_matches_steering_vectors(model: interp.Model, contrast: ContrastSet) -> None:
    from steering_vectors import logistic_aggregator, train_steering_vector

    ours = extract_vectors(model, contrast, "resid_post", [1], "logistic")
    theirs = train_steering_vector(
        model.hf, model.tokenizer, [(p.positive, p.negative) for p in contrast.pairs], layers=[1], aggregator=logistic_aggregator()
    )
    assert torch.nn.functional.cosine_similarity(ours.vector(1), theirs.layer_activations[1], dim=0) > 0.999
    assert ours.vector(1).norm().item() == pytest.approx(1.0, abs=1e-6)
    pos = torch.randn(10, 4, dtype=torch.float64) + torch.tensor([2.0, 0, 0, 0], dtype=torch.float64)
    assert logistic(pos, pos - torch.tensor([4.0, 0, 0, 0], dtype=torch.float64))[0] > 0.9


def test_one_pass_gives_every_method_with_norms_and_provenance(model: interp.Model, contrast: ContrastSet, tmp_path) -> None:
    built = build_vectors(model, contrast, "resid_post", None, ("mean_diff", "single_pair", "pca_diff", "logistic"))
    mean, single = built["mean_diff"], built["single_pair"]
    assert mean.layers == (0, 1, 2) and mean.data_hash == contrast.hash()
    _, cache = model.run_with_cache(list(contrast.pairs[0].texts), sites=[mean.site(1)])
    acts = cache[mean.site(1)]
    torch.testing.assert_close(single.vector(1), acts[0, -1] - acts[1, -1], atol=1e-5, rtol=1e-5)
    every_token = torch.cat(
        [model.run_with_cache(text, sites=[mean.site(1)])[1][mean.site(1)][0] for text in contrast.positives + contrast.negatives]
    )
    assert mean.token_norms is not None
    assert mean.token_norms[1].item() == pytest.approx(every_token.norm(dim=-1).median().item(), rel=1e-5)
    strong = mean.scaled(1, 0.5, unit="norm")
    assert strong.norm().item() == pytest.approx(0.5 * mean.token_norms[1].item(), rel=1e-5)
    loaded = load_vectors(mean.save(tmp_path / "v"))
    assert torch.equal(loaded.vectors, mean.vectors) and loaded.method == "mean_diff" and loaded.meta["token"] == "last"


def test_answer_and_span_tokens_of_completion_pairs(model: interp.Model, tmp_path) -> None:
    lines = [{"prompt": f"When {a} went to the store,", "positive": " Mary gave a drink", "negative": " John had a book"} for a in ("Tom", "Bob", "Anna")]
    file = tmp_path / "pairs.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in lines))
    contrast = load_contrast(file)
    answer = extract_vectors(model, contrast, "resid_post", [1], "mean_diff", token="answer")
    span = extract_vectors(model, contrast, "resid_post", [1], "mean_diff", token="span")
    site = answer.site(1)
    diffs, span_diffs = [], []
    for pair in contrast.pairs:
        prompt_tokens = len(model.tokenizer(pair.prompt)["input_ids"])
        pos = model.run_with_cache(pair.texts[0], sites=[site])[1][site][0]
        neg = model.run_with_cache(pair.texts[1], sites=[site])[1][site][0]
        diffs.append(pos[prompt_tokens] - neg[prompt_tokens])
        span_diffs.append(pos[prompt_tokens:].mean(0) - neg[prompt_tokens:].mean(0))
    torch.testing.assert_close(answer.vector(1), torch.stack(diffs).mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(span.vector(1), torch.stack(span_diffs).mean(0), atol=1e-5, rtol=1e-5)


def test_bad_contrast_input_is_named(model: interp.Model, tmp_path) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text('{"positive": "a"}\n')
    with pytest.raises(InvalidArgumentError, match="negative"):
        load_contrast(file)
    plain = ContrastSet.from_pairs([("I love it", "I hate it")])
    with pytest.raises(InvalidArgumentError, match="answer token"):
        extract_vectors(model, plain, token="answer")
    with pytest.raises(InvalidArgumentError, match="unknown"):
        build_vectors(model, plain, methods=("mean",))
    with pytest.raises(InvalidArgumentError, match="outside"):
        extract_vectors(model, plain, layers=[7])


def test_gguf_control_vector_import_matches_repeng(model: interp.Model, contrast: ContrastSet, tmp_path) -> None:
    package = repeng()
    generator = torch.Generator().manual_seed(3)
    directions = {layer: torch.randn(64, generator=generator).numpy() for layer in (1, 2)}
    path = tmp_path / "cv.gguf"
    package.ControlVector(model_type="llama", directions=directions).export_gguf(str(path))
    vectors = from_gguf(path)
    assert vectors.kind == "resid_post" and vectors.layers == (1, 2) and vectors.meta["model_hint"] == "llama"
    for layer in (1, 2):
        assert torch.equal(vectors.vector(layer), torch.from_numpy(directions[layer]))
    (tmp_path / "not.gguf").write_bytes(b"nope")
    with pytest.raises(interp.vectors.VectorFormatError):
        from_gguf(tmp_path / "not.gguf")


def test_steering_vectors_objects_convert_both_ways(model: interp.Model, contrast: ContrastSet) -> None:
    ours = extract_vectors(model, contrast, "attn_out", [0, 2])
    theirs = to_steering_vector(ours)
    assert theirs.layer_type == "self_attn" and set(theirs.layer_activations) == {0, 2}
    back = from_steering_vector(theirs)
    assert back.kind == "attn_out" and torch.equal(back.vectors, ours.vectors)
