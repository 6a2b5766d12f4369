"""``interp steer CONFIG``: validation by kind, and vectors / DAC runs that load back from the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from interp.cli import app
from interp.config import ConfigError
from interp.runs import RunStore
from interp.steering import extract_vectors, load_contrast
from interp.steering.config import CONFIGS, DACConfig, VectorsConfig, load_steer_config
from interp.steering.runner import vectors_dir
from interp.vectors import load_vectors
from tests.steering.conftest import NAMES, PROMPTS


def _data(tmp_path: Path) -> Path:
    file = tmp_path / "pairs.jsonl"
    lines = [
        {"positive": f"When {a} went to the store, {b} gave a drink to", "negative": f"Then {a} and {b} went to the park. {b} handed the book to"}
        for a, b in zip(NAMES, NAMES[2:])
    ]
    file.write_text("\n".join(json.dumps(line) for line in lines))
    return file


def _vectors_config(tmp_path: Path) -> dict:
    return {
        "kind": "vectors",
        "model": "tiny-llama",
        "data": str(_data(tmp_path)),
        "layers": [0, 1, 2],
        "methods": ["mean_diff", "pca_diff"],
        "sweep": {"layers": [1, 2], "strengths": [0.0, 0.5, 1.0], "prompts": PROMPTS, "max_new_tokens": 4},
        "score": {"positive": [" Mary"], "negative": [" John"]},
    }


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "steer.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_config_kind_selects_the_schema_and_bad_keys_are_named(tmp_path: Path) -> None:
    assert set(CONFIGS) == {"vectors", "dac", "function_vectors"}
    config = load_steer_config(_write(tmp_path, _vectors_config(tmp_path)))
    assert isinstance(config, VectorsConfig) and config.sweep.unit == "norm"
    with pytest.raises(ConfigError, match="kind: must be one of"):
        load_steer_config(_write(tmp_path, {**_vectors_config(tmp_path), "kind": "vector"}))
    with pytest.raises(ConfigError, match="sweep.strenghts: unknown key"):
        bad = _vectors_config(tmp_path)
        bad["sweep"]["strenghts"] = [1]
        load_steer_config(_write(tmp_path, bad))
    with pytest.raises(ConfigError, match="not among methods"):
        load_steer_config(_write(tmp_path, _vectors_config(tmp_path)), ["sweep.method=logistic"])
    assert Path("data/steer_demo.yaml").is_file()
    assert isinstance(load_steer_config("data/steer_demo.yaml"), VectorsConfig)
    assert isinstance(load_steer_config("data/dac_demo.yaml"), DACConfig)


def test_vectors_run_writes_vectors_sweep_and_samples(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["steer", str(_write(tmp_path, _vectors_config(tmp_path))), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    assert "effect vs KL" in result.output
    (info,) = RunStore(runs).list()
    run = RunStore(runs).get(info.id)
    assert run.kind == "steering" and run.status == "finished"
    stored = load_vectors(vectors_dir(run, "mean_diff"))
    import interp

    direct = extract_vectors(interp.load_model("tiny-llama"), load_contrast(tmp_path / "pairs.jsonl"), layers=[0, 1, 2])
    assert torch.equal(stored.vectors, direct.vectors)
    sweep = run.read_table("sweep")
    assert len(sweep) == 6 and sweep[sweep.strength == 0].kl.max() < 1e-6
    assert len(run.read_table("samples")) == 12 and len(run.read_table("steps")) > 0


def test_dac_run_writes_trace(tmp_path: Path) -> None:
    config = {
        "kind": "dac",
        "model": "tiny-llama",
        "properties": [{"name": "store", "data": str(_data(tmp_path)), "steps": 3, "layers": [0, 1]}],
        "prompts": PROMPTS,
        "max_new_tokens": 3,
        "top_p": 0.9,
    }
    assert isinstance(load_steer_config(_write(tmp_path, config)), DACConfig)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["steer", str(_write(tmp_path, config)), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    run = RunStore(runs).get(RunStore(runs).list()[0].id)
    trace = run.read_table("trace")
    assert len(trace) == 2 * 3 and trace.alpha.between(0, 2).all()
    assert run.read_tensors("deltas_0")["deltas"].shape == (3, 2, 4, 16)


def test_function_vectors_run_through_steer(tmp_path: Path) -> None:
    task = tmp_path / "names.jsonl"
    task.write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in zip(NAMES, NAMES[1:] + NAMES[:1])))
    config = {
        "kind": "function_vectors", "model": "tiny-llama", "task": str(task), "n_shots": 2, "n_mean_prompts": 4,
        "n_effect_prompts": 3, "n_top_heads": 2, "filter_correct": False, "layers": [0, 2], "batch_size": 2,
    }
    assert load_steer_config(_write(tmp_path, config)).kind == "function_vectors"
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["steer", str(_write(tmp_path, config)), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    assert "zero-shot accuracy by injection layer" in result.output
    run = RunStore(runs).get(RunStore(runs).list()[0].id)
    assert run.kind == "function_vectors" and sorted(run.read_table("accuracy")["layer"]) == [0, 2]
