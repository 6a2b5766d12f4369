"""LayerVectors: the direction value shared by steering and CAVs, its strength units and its files."""

from __future__ import annotations

import json

import pytest
import torch

from interp.errors import InvalidArgumentError
from interp.vectors import LayerVectors, VectorFormatError, data_hash, load_vectors


def _vectors() -> LayerVectors:
    torch.manual_seed(0)
    return LayerVectors(
        kind="resid_post",
        layers=(1, 3),
        vectors=torch.randn(2, 8),
        method="mean_diff",
        model={"name": "tiny"},
        data_hash=data_hash([{"positive": "a", "negative": "b"}]),
        token_norms=torch.tensor([2.0, 5.0]),
        meta={"token": "last", "accuracy": [0.9, 0.95]},
    )


def test_save_load_round_trip(tmp_path):
    vectors = _vectors()
    loaded = load_vectors(vectors.save(tmp_path / "v"))
    assert loaded.kind == "resid_post" and loaded.layers == (1, 3) and loaded.method == "mean_diff"
    assert torch.equal(loaded.vectors, vectors.vectors)
    assert torch.equal(loaded.token_norms, vectors.token_norms)
    assert loaded.model == {"name": "tiny"} and loaded.data_hash == vectors.data_hash
    assert loaded.meta == {"token": "last", "accuracy": [0.9, 0.95]}


def test_norm_strength_is_a_fraction_of_the_median_token_norm():
    vectors = _vectors()
    added = vectors.scaled(3, 0.5, unit="norm")
    assert added.norm().item() == pytest.approx(2.5, rel=1e-6)
    cosine = torch.nn.functional.cosine_similarity(added, vectors.vector(3), dim=0)
    assert cosine.item() == pytest.approx(1.0, abs=1e-6)
    raw = vectors.raw_strength(3, 0.5, unit="norm")
    assert torch.allclose(raw * vectors.vector(3), added, atol=1e-6)
    assert torch.equal(vectors.scaled(1, 0.0), torch.zeros(8))


def test_site_names_and_unknown_layers():
    vectors = _vectors()
    assert vectors.site(3) == "blocks.3.hook_resid_post"
    with pytest.raises(InvalidArgumentError, match=r"layers \[1, 3\]"):
        vectors.vector(2)


def test_sum_composes_and_refuses_mismatched_layers():
    vectors = _vectors()
    doubled = vectors + vectors
    assert torch.allclose(doubled.vectors, 2 * vectors.vectors)
    with pytest.raises(InvalidArgumentError, match="select the same layers"):
        vectors + vectors.select([3])


def test_bad_values_are_refused():
    with pytest.raises(InvalidArgumentError, match="block site kind"):
        LayerVectors(kind="logits", layers=(0,), vectors=torch.zeros(1, 4), method="x")
    with pytest.raises(InvalidArgumentError, match="shape"):
        LayerVectors(kind="resid_pre", layers=(0, 1), vectors=torch.zeros(1, 4), method="x")
    with pytest.raises(InvalidArgumentError, match="NaN"):
        LayerVectors(kind="resid_pre", layers=(0,), vectors=torch.full((1, 4), float("nan")), method="x")
    without_norms = LayerVectors(kind="resid_pre", layers=(0,), vectors=torch.ones(1, 4), method="x")
    with pytest.raises(InvalidArgumentError, match="unit='raw'"):
        without_norms.scaled(0, 1.0, unit="norm")


def test_disagreeing_files_name_the_file(tmp_path):
    directory = _vectors().save(tmp_path / "v")
    meta = json.loads((directory / "vectors.json").read_text())
    meta["shape"] = [9]
    (directory / "vectors.json").write_text(json.dumps(meta))
    with pytest.raises(VectorFormatError, match="vectors.json says"):
        load_vectors(directory)
    with pytest.raises(VectorFormatError, match="does not exist"):
        load_vectors(tmp_path / "missing")
