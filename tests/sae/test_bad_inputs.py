"""Bad SAE inputs, table-driven: each broken config or SAE directory -> the error type and a message
that names the file, the field and the fix; ``interp sae info`` prints it on one line, no traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import interp.sae as sae_pkg
from interp.config import ConfigError, validate
from interp.sae import SAE, BatchTopKConfig, SAEConfig, SAEFormatError, TopAFAConfig, TopKConfig, TrainConfig
from interp.sae.cli import app
from interp.sae.io import export_sparsify, save_sae

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sae"


def _spec(d_sae: int, activation: dict) -> dict:
    return {"training_tokens": 8192, "saes": [{"name": "a", "site": "blocks.1.hook_resid_post", "d_sae": d_sae, "activation": activation}]}


@pytest.mark.parametrize(
    "raw, message",
    [
        (_spec(96, {"kind": "topk", "k": 500}), r"saes\.0: activation topk k \(500\) is larger than d_sae \(96\); use k <= 96"),
        (_spec(96, {"kind": "batchtopk", "k": 97}), r"batchtopk k \(97\) is larger than d_sae \(96\)"),
        (_spec(96, {"kind": "gsae", "k": 200}), r"gsae k \(200\) is larger than d_sae \(96\)"),
        (_spec(96, {"kind": "top_afa", "k_max": 128}), r"top_afa k_max \(128\) is larger than d_sae \(96\); use k_max <= 96"),
    ],
    ids=["topk", "batchtopk", "gsae", "top_afa"],
)
def test_k_larger_than_d_sae_is_refused_by_config_validation(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(raw, TrainConfig)


def test_k_equal_to_d_sae_is_allowed_and_sae_config_refuses_too() -> None:
    assert validate(_spec(96, {"kind": "topk", "k": 96}), TrainConfig).saes[0].d_sae == 96
    with pytest.raises(ValueError, match=r"k \(500\) is larger than d_sae \(96\)"):
        SAEConfig(d_in=8, d_sae=96, activation=TopKConfig(k=500))


def test_sae_check_refuses_k_larger_than_d_sae(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "training_tokens: 8192\nsaes: [{name: a, site: blocks.1.hook_resid_post, d_sae: 96, activation: {kind: topk, k: 500}}]\n"
    )
    result = CliRunner().invoke(app, ["check", str(config)])
    assert result.exit_code == 2 and "k (500) is larger than d_sae (96)" in result.output


# --- broken SAE directories --------------------------------------------------------------------


def _saved(directory: Path, activation=None) -> Path:
    sae = SAE.create(SAEConfig(d_in=16, d_sae=48, activation=activation or TopKConfig(k=4), site="blocks.1.hook_resid_post"))
    return save_sae(sae, directory)


def _edit_cfg(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        cfg = json.loads((directory / "cfg.json").read_text())
        cfg["metadata"].pop("interp", None)  # read as SAELens's files are
        change(cfg)
        (directory / "cfg.json").write_text(json.dumps(cfg))

    return apply


def _drop_tensor(name: str) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        file = directory / "sae_weights.safetensors"
        tensors = load_file(str(file))
        del tensors[name]
        save_file(tensors, str(file))

    return apply


def _replace_tensor(directory: Path, name: str, value: torch.Tensor) -> None:
    file = directory / "sae_weights.safetensors"
    tensors = load_file(str(file))
    tensors[name] = value
    save_file(tensors, str(file))


def _truncate(name: str) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        file = directory / name
        file.write_bytes(file.read_bytes()[:200])

    return apply


def _write_cfg(text: str) -> Callable[[Path], None]:
    return lambda directory: (directory / "cfg.json").write_text(text)


def _set_interp_activation(value: object) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        cfg = json.loads((directory / "cfg.json").read_text())
        cfg["metadata"]["interp"]["activation"] = value
        (directory / "cfg.json").write_text(json.dumps(cfg))

    return apply


def _sparsify(change: Callable[[Path], None]) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        sae = SAE.create(SAEConfig(d_in=16, d_sae=48, activation=TopKConfig(k=4)))
        export_sparsify(sae, directory / "run" / "layers.1")
        change(directory / "run" / "layers.1")
        return directory / "run" / "layers.1"

    return build


def _sparsify_cfg(**fields: object) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        cfg = json.loads((directory / "cfg.json").read_text())
        cfg.update(fields)
        (directory / "cfg.json").write_text(json.dumps(cfg))

    return apply


def _sparsify_drop(name: str) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        tensors = load_file(str(directory / "sae.safetensors"))
        del tensors[name]
        save_file(tensors, str(directory / "sae.safetensors"))

    return apply


def _ours(change: Callable[[Path], None], activation=None) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        path = _saved(directory / "sae", activation)
        change(path)
        return path

    return build


def _fixture_copy(name: str) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        shutil.copytree(FIXTURES / name, directory / "copy")
        return directory / "copy"

    return build


BAD_DIRECTORIES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("k_zero", _ours(_edit_cfg(lambda c: c.update(k=0))), r"cfg\.json: k must be a positive integer, got 0"),
    ("k_negative", _ours(_edit_cfg(lambda c: c.update(k=-3))), r"cfg\.json: k must be a positive integer, got -3"),
    ("k_string", _ours(_edit_cfg(lambda c: c.update(k="8"))), r"cfg\.json: k must be a positive integer, got '8'"),
    ("k_above_d_sae", _ours(_edit_cfg(lambda c: c.update(k=500))), r"cfg\.json: .*k \(500\) is larger than d_sae \(48\)"),
    ("k_max_zero", _ours(_edit_cfg(lambda c: c.update(k_max=0)), TopAFAConfig(k_max=8)), r"cfg\.json: k_max must be a positive integer, got 0"),
    ("d_sae_zero", _ours(_edit_cfg(lambda c: c.update(d_sae=0))), r"cfg\.json: d_sae must be a positive integer, got 0"),
    ("missing_b_enc", _ours(_drop_tensor("b_enc")), r"sae_weights\.safetensors lacks tensor\(s\) \['b_enc'\]"),
    ("missing_W_enc", _ours(_drop_tensor("W_enc")), r"sae_weights\.safetensors lacks tensor\(s\) \['W_enc'\]"),
    ("missing_W_dec", _ours(_drop_tensor("W_dec")), r"sae_weights\.safetensors lacks tensor\(s\) \['W_dec'\]"),
    ("missing_b_dec", _ours(_drop_tensor("b_dec")), r"sae_weights\.safetensors lacks tensor\(s\) \['b_dec'\]"),
    ("batchtopk_missing_threshold", _ours(_drop_tensor("threshold"), BatchTopKConfig(k=4)), r"lacks tensor\(s\) \['threshold'\]"),
    ("jumprelu_missing_threshold", lambda d: _jumprelu_without_threshold(d), r"lacks tensor\(s\) \['threshold'\]"),
    ("missing_cfg", _ours(lambda d: (d / "cfg.json").unlink()), r"cfg\.json is missing"),
    ("cfg_not_json", _ours(_write_cfg("{not json")), r"cfg\.json is not valid JSON"),
    ("cfg_not_object", _ours(_write_cfg("[1, 2, 3]")), r"cfg\.json must hold a JSON object of settings, got list"),
    ("missing_weights", _ours(lambda d: (d / "sae_weights.safetensors").unlink()), r"has neither sae_weights\.safetensors \(SAELens\) nor sae\.safetensors"),
    ("truncated_weights", _ours(_truncate("sae_weights.safetensors")), r"sae_weights\.safetensors is not a readable safetensors file .*truncated"),
    ("d_in_mismatch", _ours(_edit_cfg(lambda c: c.update(d_in=32))), r"W_enc has shape \(16, 48\), but cfg\.json's d_in=32, d_sae=48 need \(32, 48\)"),
    ("d_sae_huge", _ours(_edit_cfg(lambda c: c.update(d_sae=10**9))), r"W_enc has shape \(16, 48\), but cfg\.json's d_in=16, d_sae=1000000000 need"),
    ("threshold_shape", _ours(lambda d: _replace_tensor(d, "threshold", torch.zeros(5)), BatchTopKConfig(k=4)), r"threshold has shape \(5,\), expected \(48,\)"),
    ("unknown_architecture", _ours(_edit_cfg(lambda c: c.update(architecture="wavy"))), r"SAELens architecture 'wavy' is not supported"),
    ("unknown_interp_activation", _ours(_set_interp_activation({"kind": "wavy"})), r"metadata\.interp\.activation\.kind 'wavy' is not an activation"),
    ("invalid_interp_activation", _ours(_set_interp_activation({"kind": "topk", "k": -1})), r"metadata\.interp\.activation is invalid: k: Input should be greater than 0"),
    ("sparsify_run_root", _fixture_copy("sparsify_run"), r"holds SAE folders \['layers\.1'\]: load one of them"),
    ("sparsify_k_zero", _sparsify(_sparsify_cfg(k=0)), r"layers\.1/cfg\.json: k must be a positive integer, got 0"),
    ("sparsify_no_k", _sparsify(_sparsify_cfg(k=None)), r"layers\.1/cfg\.json: a sparsify SAE needs 'k'"),
    ("sparsify_missing_bias", _sparsify(_sparsify_drop("encoder.bias")), r"sae\.safetensors lacks tensor\(s\) \['encoder\.bias'\]"),
    ("sparsify_truncated", _sparsify(_truncate("sae.safetensors")), r"sae\.safetensors is not a readable safetensors file"),
    ("sparsify_size_mismatch", _sparsify(_sparsify_cfg(num_latents=64)), r"num_latents=64 but encoder\.weight has shape \(48, 16\)"),
    ("does_not_exist", lambda d: d / "nowhere", r"nowhere does not exist"),
]


def _jumprelu_without_threshold(directory: Path) -> Path:
    path = _fixture_copy("saelens_jumprelu")(directory)
    _drop_tensor("threshold")(path)
    return path


@pytest.mark.parametrize("build, message", [(b, m) for _, b, m in BAD_DIRECTORIES], ids=[n for n, _, _ in BAD_DIRECTORIES])
def test_broken_sae_directories_are_refused_with_one_clear_line(tmp_path: Path, build, message: str) -> None:
    path = build(tmp_path)
    with pytest.raises(SAEFormatError, match=message) as error:
        sae_pkg.load(path)
    assert "\n" not in str(error.value) and len(str(error.value)) < 600
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output


def test_top_afa_without_b_enc_loads_with_a_warning(tmp_path: Path) -> None:
    """top-AFA has no encoder bias (the reference's convention), so a file without one is complete."""
    path = _saved(tmp_path / "afa", TopAFAConfig(k_max=8))
    _drop_tensor("b_enc")(path)
    with pytest.warns(UserWarning, match="has no b_enc; top_afa does not use an encoder bias"):
        sae = sae_pkg.load(path)
    assert torch.equal(sae.b_enc, torch.zeros(48))


def test_an_sae_on_another_device_than_its_input_is_refused_with_the_fix() -> None:
    from interp.errors import InvalidArgumentError

    sae = SAE.create(SAEConfig(d_in=8, d_sae=16, activation=TopKConfig(k=2)), seed=0).to("meta")
    with pytest.raises(InvalidArgumentError, match=r"SAE is on meta but its input is on cpu; .*sae.to\(model.device\)"):
        sae.encode(torch.zeros(3, 8))
