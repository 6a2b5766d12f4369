"""SAE files: our SAELens-layout round trip, and files written by the real SAELens and sparsify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import interp.sae as sae_pkg
from interp.sae import SAE, BatchTopKConfig, GSAEConfig, ReLUConfig, SAEConfig, SAEFormatError, TopAFAConfig, TopKConfig
from interp.sae.io import SAE_LENS_FORMAT_VERSION, export_sparsify, load_sparsity, save_sae, site_of_hookpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sae"
WRITTEN_BY_PACKAGES = [
    "saelens_topk",
    "saelens_topk_rescaled",
    "saelens_standard",
    "saelens_jumprelu",
    "saelens_batchtopk",
    "sparsify_run/layers.1",
]


def random_sae(activation, normalize: str = "none", seed: int = 0) -> SAE:
    sae = SAE.create(
        SAEConfig(d_in=16, d_sae=48, activation=activation, normalize_activations=normalize, site="blocks.1.hook_resid_post", model="tiny-llama"),
        seed=seed,
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in (sae.b_dec, sae.b_enc) if sae.activation.uses_encoder_bias else (sae.b_dec,):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return sae.eval()


@pytest.mark.parametrize(
    "activation",
    [TopKConfig(k=4), BatchTopKConfig(k=4), TopAFAConfig(k_max=10, afa_coeff=0.1), GSAEConfig(k=4, beta=3.0), ReLUConfig(l1_coeff=0.2)],
    ids=lambda a: a.kind,
)
@pytest.mark.parametrize("normalize", ["none", "layer_norm"])
def test_save_load_round_trip_is_exact(tmp_path: Path, activation, normalize: str):
    sae = random_sae(activation, normalize)
    if activation.kind == "batchtopk":
        with torch.no_grad():
            sae.activation.threshold.fill_(0.25)
    sparsity = torch.linspace(-5, 0, 48)
    save_sae(sae, tmp_path / "sae", sparsity=sparsity)
    loaded = sae_pkg.load(tmp_path / "sae")
    assert loaded.config == sae.config
    for key, value in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(20, 16)
    assert torch.equal(loaded(x), sae(x))
    assert torch.equal(load_sparsity(tmp_path / "sae"), sparsity)


def test_saelens_config_avoids_the_known_traps(tmp_path: Path):
    save_sae(random_sae(TopKConfig(k=7)), tmp_path / "topk")
    cfg = json.loads((tmp_path / "topk" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 7  # without k SAELens silently uses 100
    assert cfg["metadata"]["sae_lens_version"] == SAE_LENS_FORMAT_VERSION  # without it hook_name is dropped
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert cfg["rescale_acts_by_decoder_norm"] is False and cfg["normalize_activations"] == "none"
    weights = load_file(str(tmp_path / "topk" / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {"W_enc": (16, 48), "b_enc": (48,), "W_dec": (48, 16), "b_dec": (16,)}
    save_sae(random_sae(BatchTopKConfig(k=3)), tmp_path / "btk")
    cfg = json.loads((tmp_path / "btk" / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and "threshold" in load_file(str(tmp_path / "btk" / "sae_weights.safetensors"))
    save_sae(random_sae(TopAFAConfig(k_max=None)), tmp_path / "afa")
    assert json.loads((tmp_path / "afa" / "cfg.json").read_text())["architecture"] == "top_afa"


@pytest.mark.parametrize("name", WRITTEN_BY_PACKAGES)
def test_files_written_by_saelens_and_sparsify_load_and_match(name: str):
    directory = FIXTURES / name
    sae = sae_pkg.load(directory)
    expected = load_file(str(directory / "expected.safetensors"))
    assert sae.site == "blocks.1.hook_resid_post" and sae.config.model == "tiny-llama"
    latents = sae.encode(expected["x"]).dense()
    assert torch.allclose(latents, expected["latents"], atol=1e-5)
    assert torch.allclose(sae(expected["x"]), expected["recon"], atol=1e-5)


def test_fixture_versions_are_recorded():
    assert json.loads((FIXTURES / "saelens_version.json").read_text())["sae_lens"].startswith("6.")
    assert "eai-sparsify" in json.loads((FIXTURES / "sparsify_version.json").read_text())


def test_pre6_saelens_config_is_upgraded(tmp_path: Path):
    sae = random_sae(TopKConfig(k=5))
    save_sae(sae, tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "cfg.json").read_text())
    old = {
        "d_in": 16, "d_sae": 48, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
        "hook_point": "blocks.1.hook_resid_post", "model_name": "tiny-llama", "context_size": 32,
        "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 5}, "normalize_activations": "none",
    }
    assert "metadata" in cfg
    (tmp_path / "old" / "cfg.json").write_text(json.dumps(old))
    loaded = sae_pkg.load(tmp_path / "old")
    assert loaded.config.activation == TopKConfig(k=5) and loaded.site == "blocks.1.hook_resid_post"
    x = torch.randn(8, 16)
    assert torch.equal(loaded(x), sae(x))


def test_missing_k_warns_like_saelens_defaults(tmp_path: Path):
    wide = SAE.create(SAEConfig(d_in=16, d_sae=128, activation=TopKConfig(k=5)))
    save_sae(wide, tmp_path / "nok")
    cfg = json.loads((tmp_path / "nok" / "cfg.json").read_text())
    del cfg["k"], cfg["metadata"]["interp"]
    (tmp_path / "nok" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="k=100"):
        assert sae_pkg.load(tmp_path / "nok").config.activation.k == 100
    save_sae(random_sae(TopKConfig(k=5)), tmp_path / "narrow")  # d_sae 48: SAELens's default k cannot apply
    cfg = json.loads((tmp_path / "narrow" / "cfg.json").read_text())
    del cfg["k"], cfg["metadata"]["interp"]
    (tmp_path / "narrow" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SAEFormatError, match=r"without 'k'.*k=100 is larger than d_sae \(48\)"):
        sae_pkg.load(tmp_path / "narrow")


def test_unsupported_files_are_refused_with_reasons(tmp_path: Path):
    save_sae(random_sae(TopKConfig(k=5)), tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    del cfg["metadata"]["interp"]
    for key, value, match in [
        ("architecture", "gated", "gated"),
        ("normalize_activations", "expected_average_only_in", "fold it"),
        ("reshape_activations", "hook_z", "hook_z"),
    ]:
        (tmp_path / "s" / "cfg.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(SAEFormatError, match=match):
            sae_pkg.load(tmp_path / "s")
    with pytest.raises(SAEFormatError, match="layers.1"):
        sae_pkg.load(FIXTURES / "sparsify_run")  # a run directory: names the SAE folders inside


def test_sparsify_export_round_trip(tmp_path: Path):
    sae = random_sae(TopKConfig(k=4))
    export_sparsify(sae, tmp_path / "run" / "layers.3")
    loaded = sae_pkg.load(tmp_path / "run" / "layers.3")
    assert loaded.site == "blocks.3.hook_resid_post"
    x = torch.randn(10, 16)
    assert torch.allclose(loaded(x), sae(x))
    with pytest.raises(SAEFormatError):
        export_sparsify(random_sae(TopAFAConfig()), tmp_path / "afa")


def test_hookpoint_mapping():
    assert site_of_hookpoint("layers.7") == "blocks.7.hook_resid_post"
    assert site_of_hookpoint("h.0") == "blocks.0.hook_resid_post"
    assert site_of_hookpoint("embed_tokens") == "hook_embed"
    assert site_of_hookpoint("layers.7.mlp") is None
