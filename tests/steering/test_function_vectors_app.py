"""The function-vector app page (AppTest) and figures, on a run the library writes with a tiny model."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from interp.errors import InvalidArgumentError
from interp.runs import RunStore
from interp.steering.fv_config import FunctionVectorConfig
from interp.steering.fv_runner import run_function_vectors
from interp.viz.function_vectors import accuracy_by_layer, aie_heatmap

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "Home.py")
PAGE = "views/function_vectors.py"


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fv-runs")
    task = tmp_path_factory.mktemp("fv-task") / "names.jsonl"
    names = ["Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah", "Paul", "Kate"]
    task.write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in zip(names, names[1:] + names[:1])))
    config = FunctionVectorConfig(
        model="tiny-llama", task=str(task), n_shots=2, n_mean_prompts=4, n_effect_prompts=2, n_top_heads=3,
        filter_correct=False, layers=[0, 1], batch_size=4,
    )
    run_function_vectors(config, RunStore(root))
    return root


def _array(value: dict | list) -> np.ndarray:
    if isinstance(value, dict):
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape is not None else data
    return np.asarray(value, dtype=float)


def _open(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("INTERP_RUNS_DIR", str(root))
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.run()
    at.switch_page(PAGE)
    return at.run()


def test_page_shows_the_stored_heatmap_and_accuracy(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(store_root, monkeypatch)
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    [info] = RunStore(store_root).list("function_vectors")
    run = RunStore(store_root).get(info.id)
    heads, accuracy = run.read_table("heads"), run.read_table("accuracy")
    heatmap, lines = (json.loads(chart.proto.spec) for chart in at.get("plotly_chart"))
    expected = heads.pivot(index="layer", columns="head", values="aie").sort_index().to_numpy()
    np.testing.assert_allclose(_array(heatmap["data"][0]["z"]).reshape(expected.shape), expected)
    assert len(heatmap["data"][1]["x"]) == 3  # the three heads of the function vector are marked
    np.testing.assert_allclose(_array(lines["data"][0]["y"]), accuracy["fv"].to_numpy())
    shown = at.dataframe[1].value
    assert shown["layer"].tolist() == [0, 1] and shown["fv"].tolist() == pytest.approx(accuracy["fv"].tolist())
    assert at.dataframe[0].value["rank"].tolist() == [1, 2, 3]


def test_empty_store_says_how_to_make_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(tmp_path, monkeypatch)
    assert not at.exception
    assert "interp steer data/function_vectors_demo.yaml" in " ".join(i.value for i in at.info)


def test_figures_refuse_tables_without_their_columns() -> None:
    with pytest.raises(InvalidArgumentError, match=r"no column\(s\) \['aie'\]"):
        aie_heatmap(pd.DataFrame({"layer": [0], "head": [0]}))
    with pytest.raises(InvalidArgumentError, match="accuracy table"):
        accuracy_by_layer(pd.DataFrame({"layer": [0], "fv": [0.5]}))
