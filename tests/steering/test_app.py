"""The Steering page with ``streamlit.testing.v1.AppTest`` on runs that ``interp steer`` writes (tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from interp.runs import RunStore
from interp.steering.config import DACConfig, VectorsConfig
from interp.steering.runner import run_dac, run_vectors
from interp.viz.steering import effect_vs_kl
from tests.steering.conftest import NAMES, PROMPTS

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "Home.py")
PAGE = "views/steering.py"


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    data = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    data.write_text("\n".join(
        json.dumps({"positive": f"When {a} went to the store, {b} gave a drink to", "negative": f"Then {a} and {b} went to the park."})
        for a, b in zip(NAMES, NAMES[1:])
    ))
    run_vectors(VectorsConfig.model_validate({
        "model": "tiny-llama", "data": str(data), "layers": [1, 2],
        "sweep": {"strengths": [0.0, 0.5], "prompts": PROMPTS, "max_new_tokens": 3},
        "score": {"positive": [" Mary"]},
    }), RunStore(root))
    run_dac(DACConfig.model_validate({
        "model": "tiny-llama", "properties": [{"name": "store", "data": str(data), "steps": 2, "layers": [1]}],
        "prompts": PROMPTS, "max_new_tokens": 2, "top_p": 0.9,
    }), RunStore(root))
    return root


def open_page(root: Path, monkeypatch: pytest.MonkeyPatch, **state) -> AppTest:
    st.cache_data.clear()
    monkeypatch.setenv("INTERP_RUNS_DIR", str(root))
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_sweep_section_draws_the_stored_curves(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(store_root, monkeypatch)
    _clean(at)
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert specs[0]["layout"]["xaxis"]["title"]["text"].startswith("mean KL")
    assert {trace["name"] for trace in specs[0]["data"]} == {"layer 1", "layer 2"}
    table = RunStore(store_root).get(RunStore(store_root).list("steering")[0].id).read_table("sweep")
    assert effect_vs_kl(table).data[0].name == "layer 1"
    assert len(specs) == 2  # the curves and the sample's per-token KL strip


def test_dac_section_and_playground(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(store_root, monkeypatch, section="DAC")
    _clean(at)
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"] == "DAC intensity per step"
    at = open_page(store_root, monkeypatch, section="Playground", **{"play-strength": 0.5, "play-tokens": 3})
    _clean(at)
    codes = [c.value for c in at.code]
    assert len(codes) == 2 and codes[0] != codes[1], codes
    assert any(c.value.startswith("kl ") for c in at.caption)
    assert json.loads(at.get("plotly_chart")[-1].proto.spec)["data"][0]["type"] == "heatmap"


def test_empty_store_says_how_to_make_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(tmp_path, monkeypatch)
    assert not at.exception
    assert "interp steer data/steer_demo.yaml" in " ".join(i.value for i in at.info)
