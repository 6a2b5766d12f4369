"""``interp tcav CONFIG`` on a tiny model: a run with every table, CAV files that load, bad configs named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from interp.cli import app
from interp.concepts.config import TCAVConfig
from interp.config import ConfigError, load_config
from interp.runs import RunStore
from interp.vectors import load_vectors

DATA = Path(__file__).resolve().parents[2] / "data" / "concepts"


def tiny_config(tmp_path: Path) -> Path:
    target = tmp_path / "target.jsonl"
    target.write_text("".join(
        json.dumps({"prompt": f"Sentence number {i} is about", "answer": " the", "wrong": " a"}) + "\n" for i in range(6)
    ))
    config = {
        "model": "tiny-llama", "layers": [0, 2], "selector": "mean", "classifier": "logistic",
        "concepts": [{"name": "french", "path": str(DATA / "french.jsonl")}],
        "random": str(DATA / "random.jsonl"), "target": {"path": str(target), "metric": "logit_diff"},
        "n_random": 3, "n_permutations": 50, "steer": {"strength": 2.0},
        "gcav": {"dim": 8, "steps": 20, "fusion_steps": 10}, "nmf": {"layer": 1, "components": 4},
    }
    path = tmp_path / "tcav.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_tcav_command_writes_a_complete_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["tcav", str(tiny_config(tmp_path)), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    run = RunStore(runs).list(kind="tcav")[0]
    loaded = RunStore(runs).get(run.id)
    assert loaded.status == "finished"
    tests = loaded.read_table("tests")
    assert list(tests.layer) == [0, 2] and set(tests.concept) == {"french"}
    assert tests.p_bonferroni.between(0, 1).all() and (tests.p_bonferroni >= tests.p_t).all()
    scores = loaded.read_table("scores")
    assert len(scores) == 2 * 3 * 2  # (french, random) x 3 runs x 2 layers
    assert tests.accuracy.min() > 0.9  # French vs English is easy to read even for a random tiny model
    steer = loaded.read_table("steer")
    assert len(steer) == 2 and (steer.kl >= 0).all()
    target = loaded.read_json("target")
    assert len(target["tokens"]) == 6 and len(target["ranges"]) == 6
    assert list(loaded.read_table("gcav").layer) == [0, 2]
    assert loaded.read_table("gcav_variance").variance_before.notna().all()
    nmf = loaded.read_json("nmf")
    assert 0 < nmf["r2"] <= 1 and nmf["kl"] >= 0
    assert len(loaded.read_table("nmf_top")) == 4 * 5
    cav = load_vectors(Path(loaded.path) / "cavs" / "french")
    assert cav.layers == (0, 2) and cav.meta["classifier"] == "logistic"


def test_bad_tcav_configs_are_named(tmp_path: Path) -> None:
    path = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match="n_random"):
        load_config(path, TCAVConfig, {"n_random": 1})
    with pytest.raises(ConfigError, match="kind"):
        load_config(path, TCAVConfig, {"kind": "resid"})
    with pytest.raises(ConfigError, match="selectr"):
        load_config(path, TCAVConfig, {"selectr": "last"})
