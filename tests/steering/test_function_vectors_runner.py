"""The function-vector config and runner on a tiny model: the run's tables, vectors, and resuming."""

from __future__ import annotations

import json

import pytest
import torch

from interp.config import ConfigError, load_config, validate
from interp.runs import RunStore
from interp.steering.fv_config import FunctionVectorConfig
from interp.steering.fv_runner import run_function_vectors, vectors_path
from interp.vectors import load_vectors


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    return None


@pytest.fixture()
def config(tmp_path) -> FunctionVectorConfig:
    task = tmp_path / "names.jsonl"
    names = ["Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah", "Paul", "Kate"]
    task.write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in zip(names, names[1:] + names[:1])))
    return FunctionVectorConfig(
        model="tiny-llama", task=str(task), n_shots=2, n_mean_prompts=4, n_effect_prompts=3, n_top_heads=2,
        filter_correct=False, layers=[0, 2], batch_size=2,
    )


class Stop(Exception):
    pass


def test_run_writes_heads_vectors_and_accuracy_and_resumes(tmp_path, config) -> None:
    store = RunStore(tmp_path / "runs")

    def stop_after_first_layer(stage: str, done: int, total: int) -> None:
        if stage == "layers" and done == 1:
            raise Stop

    with pytest.raises(Stop):
        run_function_vectors(config, store, progress=stop_after_first_layer)
    [info] = store.list(kind="function_vectors")
    run = run_function_vectors(config, store, resume=info.id)
    assert run.id == info.id and run.status == "finished"
    heads, effects = run.read_table("heads"), run.read_tensors("head_effects")
    assert len(heads) == 3 * 4  # every (layer, head) of the tiny model
    aie = effects["cie"].mean(-1)
    stored = [aie[layer, head].item() for layer, head in zip(heads["layer"], heads["head"], strict=True)]
    assert heads["aie"].tolist() == pytest.approx(stored, abs=1e-7)
    fv = load_vectors(vectors_path(run))
    top = heads.sort_values("aie", ascending=False).head(2)
    assert sorted(map(tuple, fv.meta["heads"])) == sorted(zip(top["layer"], top["head"], strict=True))
    assert set(heads.loc[heads["in_fv"], "rank"]) == {1, 2}
    assert fv.kind == "resid_post" and fv.layers == (0, 1, 2)
    random_fv = load_vectors(vectors_path(run, "random_heads"))
    assert len(random_fv.meta["heads"]) == 2
    accuracy = run.read_table("accuracy")
    assert accuracy["layer"].tolist() == [0, 2]
    assert set(accuracy.columns) >= {"zero_shot", "fv", "random_heads", "icl", "n"}
    assert accuracy[["zero_shot", "fv", "random_heads", "icl"]].apply(lambda c: c.between(0, 1)).all().all()
    assert run.manifest["summary"]["best_layer"] in (0, 2)

    fresh = run_function_vectors(config, store)  # an uninterrupted run gives the same numbers
    torch.testing.assert_close(fresh.read_tensors("head_effects")["cie"], effects["cie"], rtol=0, atol=0)
    assert fresh.read_table("accuracy").equals(accuracy)


def test_config_file_and_bad_values(tmp_path) -> None:
    path = tmp_path / "fv.yaml"
    path.write_text("kind: function_vectors\nmodel: tiny-llama\ntask: antonyms\nn_top_heads: 3\nlayers: [1, 2]\n")
    config = load_config(path, FunctionVectorConfig)
    assert config.kind == "function_vectors" and config.layers == [1, 2] and config.n_shots == 10
    with pytest.raises(ConfigError, match="layers"):
        validate({"layers": [1, 1]}, FunctionVectorConfig)
    with pytest.raises(ConfigError, match="kind"):
        validate({"kind": "steering"}, FunctionVectorConfig)
    with pytest.raises(ConfigError, match="test_fraction"):
        validate({"test_fraction": 1.0}, FunctionVectorConfig)


def test_the_shipped_demo_config_validates() -> None:
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "data" / "function_vectors_demo.yaml", FunctionVectorConfig)
    assert config.kind == "function_vectors" and config.model == "smollm2-135m"
