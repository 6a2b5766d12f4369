"""Training configs (YAML/TOML, errors that name the bad key) and the ``interp sae`` sub-commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp.config import ConfigError, load_config, validate
from interp.sae import TrainConfig
from interp.sae.cli import app

DATA = Path(__file__).resolve().parents[2] / "data"
MINIMAL = {"training_tokens": 8192, "saes": [{"name": "a", "site": "blocks.15.hook_resid_post", "d_sae": 64, "activation": {"kind": "topk", "k": 8}}]}


@pytest.mark.parametrize("name", ["sae_topk.yaml", "sae_topafa.yaml"])
def test_shipped_example_configs_validate(name: str):
    config = load_config(DATA / name, TrainConfig)
    assert config.model == "smollm2-135m" and config.data.source.kind == "demo"
    assert config.saes[0].site == "blocks.15.hook_resid_post"  # the middle of SmolLM2's 30 layers
    assert 4096 <= config.saes[0].d_sae <= 8192 and 1_000_000 <= config.training_tokens <= 2_000_000


def test_toml_configs_load(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(
        'training_tokens = 8192\n[store]\nbatch_size = 1024\n[[saes]]\nname = "a"\nsite = "blocks.1.hook_resid_post"\n'
        'd_sae = 64\nactivation = {kind = "top_afa", k_max = 16}\n'
    )
    config = load_config(path, TrainConfig)
    assert config.saes[0].activation.k_max == 16 and config.total_steps == 8


@pytest.mark.parametrize(
    "change, message",
    [
        ({"store": {"bach_size": 10}}, "store.bach_size: unknown key"),
        ({"saes": [{**MINIMAL["saes"][0], "activation": {"kind": "topk", "k": -3}}]}, "saes.0.activation.topk.k: Input should be greater than 0 (got -3)"),
        ({"saes": [{**MINIMAL["saes"][0], "activation": {"kind": "topq"}}]}, "saes.0.activation"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"saes": [MINIMAL["saes"][0], MINIMAL["saes"][0]]}, "repeated: ['a']"),
        ({"training_tokens": 10}, "less than one batch"),
        ({"data": {"source": {"kind": "text"}}}, "data.source.text.paths: Field required"),
    ],
)
def test_bad_configs_name_the_problem(change: dict, message: str):
    with pytest.raises(ConfigError) as error:
        validate({**MINIMAL, **change}, TrainConfig)
    assert message in str(error.value)


def test_unparsable_and_wrong_suffix(tmp_path: Path):
    bad = tmp_path / "c.yaml"
    bad.write_text("saes: [unclosed")
    with pytest.raises(ConfigError, match="does not parse"):
        load_config(bad, TrainConfig)
    with pytest.raises(ConfigError, match=".yaml, .yml or .toml"):
        load_config(bad.rename(tmp_path / "c.json"), TrainConfig)


def test_cli_check_info_and_errors(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["check", str(DATA / "sae_topk.yaml")])
    assert result.exit_code == 0 and "244 steps" in result.output and "peak lr 0.0004" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("training_tokens: 100000\nsaes: []\nstore: {bach_size: 3}\n")
    result = runner.invoke(app, ["train", str(bad)])
    assert result.exit_code == 2 and "store.bach_size: unknown key" in result.output
    result = runner.invoke(app, ["info", str(Path(__file__).resolve().parents[1] / "fixtures" / "sae" / "saelens_topk")])
    assert result.exit_code == 0 and '"k": 6' in result.output



def test_cli_trains_a_tiny_config(tmp_path: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n\n".join(f"Alice and Bob went to the garden, and Bob gave a ring to Alice, time {i}." for i in range(40)))
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model: tiny-llama\ndevice: cpu\ntraining_tokens: 1500\ncheckpoint_every: 0\n"
        f"data: {{source: {{kind: text, paths: ['{corpus}']}}, context_size: 24, eval_rows: 4}}\n"
        f"store: {{batch_size: 500, buffer_rows: 16, cache: false}}\n"
        "features: {enabled: false}\n"
        "saes: [{name: s, site: blocks.1.hook_resid_post, d_sae: 64, activation: {kind: batchtopk, k: 4}}]\n"
    )
    result = CliRunner().invoke(app, ["train", str(config), "--runs", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "(finished)" in result.output and "s: l0" in result.output
    assert len(list((tmp_path / "runs").glob("sae-*/saes/s/cfg.json"))) == 1
