"""The Streamlit app, page by page, with ``streamlit.testing.v1.AppTest`` on a store the library builds.

The fixture store holds what the CLIs write, made on tiny models: two patching runs (denoising
with a layer x position, a layer x head and a three-axis sweep; noising with the layer x position
sweep), an attribution comparison and an SAE training run. Bad runs (missing file, truncated
tensors, unreadable manifest, still running, failed) are damaged copies of those, each in its own
store. Every page must show them as a message, never an exception, and must not change a byte of
the runs it reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from safetensors.torch import load_file, save_file
from streamlit.testing.v1 import AppTest

from interp.attribution import load_comparison
from interp.attribution.circuit import FeatureCircuitConfig, run_feature_circuit
from interp.attribution.config import AttributionConfig
from interp.attribution.runner import run_attribution
from interp.config import validate
from interp.models import load_model
from interp.patching.config import PatchConfig
from interp.patching.persist import load_result
from interp.patching.runner import run_config
from interp.runs import Progress, RunStore
from interp.sae import TrainConfig, train
from interp.tasks import ioi_task

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "Home.py")
PAGES = ["views/overview.py", "views/patching.py", "views/attribution.py", "views/sae.py", "views/features.py"]
TIMEOUT = 60


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one run of each kind (two patching runs), written by the library on tiny models."""
    root = tmp_path_factory.mktemp("runs")
    store = RunStore(root)
    task = {"n": 4, "seed": 0, "corruption": "abc", "order": "mixed"}
    width = ioi_task(load_model("tiny-llama"), **task).clean.shape[1]
    tail = list(range(width - 8, width))  # the last positions: a small grid, still token-labelled
    resid = {"sweep": "resid_pre", "positions": tail}
    run_config(PatchConfig.model_validate({
        "model": "tiny-llama", "task": task,
        "sweeps": [resid, {"sweep": "head_z"}, {"sweep": "head_z_by_pos", "layers": [1], "heads": [0, 1], "positions": tail[-3:]},
                   {"sweep": "resid_pre", "positions": "named"}],
    }), store)
    run_config(PatchConfig.model_validate({
        "model": "tiny-llama", "task": task, "direction": "noising", "sweeps": [resid],
    }), store)
    run_attribution(AttributionConfig.model_validate({
        "model": "tiny-llama", "task": task, "methods": ["atp", "atp*"], "sweeps": [resid, {"sweep": "head_z"}],
    }), store)
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus.write_text("\n\n\n".join(f"When Mary and John went to the store, John gave a drink to Mary. Story {i}." for i in range(60)))
    train(validate({
        "model": "tiny-llama", "device": "cpu", "training_tokens": 2000, "checkpoint_every": 0,
        "data": {"source": {"kind": "text", "paths": [str(corpus)]}, "context_size": 24, "eval_rows": 6},
        "store": {"batch_size": 500, "buffer_rows": 16, "model_batch_size": 16, "cache": False},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "dead_after_tokens": 1000},
        "features": {"top_k": 3, "context": 2, "n_logits": 4},
        "saes": [{"name": "topk", "site": "blocks.1.hook_resid_post", "d_sae": 96, "activation": {"kind": "topk", "k": 4}}],
    }, TrainConfig), RunStore(root), progress=False, log=lambda _: None)
    sae_run = RunStore(root).list("sae")[0].id
    run_feature_circuit(FeatureCircuitConfig.model_validate({
        "kind": "feature_circuit", "model": "tiny-llama", "task": {"n": 3, "seed": 0}, "sae_run": sae_run,
        "saes": ["topk"], "methods": ["atp", "ig"], "exact_top": 4, "sizes": [0, 2, 97], "ig": {"steps": 2},
    }), RunStore(root))
    return root


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_data.clear()
    yield


def run_id(root: Path, kind: str, direction: str | None = None) -> str:
    store = RunStore(root)
    for info in store.list(kind):
        if direction is None or store.get(info.id).config.get("direction") == direction:
            return info.id
    raise AssertionError(f"no {kind} run in {root}")


def open_page(root: Path, page: str, monkeypatch: pytest.MonkeyPatch, run: str | None = None, **state) -> AppTest:
    """The app on store ``root``, switched to ``page`` (with ``?run=`` and session state set), run once."""
    monkeypatch.setenv("INTERP_RUNS_DIR", str(root))
    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page)
    if run is not None:
        at.query_params["run"] = run
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def messages(at: AppTest) -> str:
    return " ".join(e.value for kind in ("error", "warning", "info") for e in getattr(at, kind))


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def progress_bars(at: AppTest) -> list[tuple[int, str]]:
    """``(percent, text)`` of each progress bar on the page."""
    return [(bar.proto.value, bar.proto.text) for bar in at.get("progress")]


def array(value: dict | list) -> np.ndarray:
    """A figure array from its JSON: plotly writes numpy arrays as base64 typed arrays."""
    if isinstance(value, dict):
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape is not None else data
    return np.asarray(value)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def copy_run(source: Path, root: Path, new_id: str) -> Path:
    """A copy of a run under a new id (the manifest's id follows the directory name)."""
    target = root / new_id
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["id"] = new_id
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


# ------------------------------------------------------------------ every page on good runs


def test_every_page_renders_and_writes_nothing(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(store_root)
    for page in PAGES:
        at = open_page(store_root, page, monkeypatch)
        assert_clean(at)
        assert at.title, page
    assert snapshot(store_root) == before


def test_overview_lists_and_filters_runs(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(store_root, "views/overview.py", monkeypatch)
    assert_clean(at)
    listed = at.dataframe[0].value
    assert sorted(listed["kind"]) == ["attribution", "feature_circuit", "patching", "patching", "sae"]
    assert at.metric[0].value == "5"
    at.multiselect(key="filter-kind").set_value(["patching"]).run()
    assert set(at.dataframe[0].value["kind"]) == {"patching"}
    link = at.get("page_link")[0]
    assert "patching" in link.proto.page


def test_patching_heatmap_matches_the_stored_result(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "patching", "denoising")
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid)
    assert_clean(at)
    result = load_result(RunStore(store_root).get(rid), "sweep0_resid_pre")
    heat = charts(at)[0]
    assert [trace["type"] for trace in heat["data"]] == ["heatmap", "scatter"]
    assert np.allclose(array(heat["data"][0]["z"]), result.mean().numpy(), atol=1e-6)
    overlay = heat["data"][1]
    n_layers, n_pos = result.grid_shape
    assert len(overlay["customdata"]) == n_layers * n_pos
    assert overlay["hovertemplate"] and overlay.get("hoverinfo") != "skip"
    assert heat["data"][0]["x"][-1] == result.position_labels[result.coords["pos"][-1]]  # tokens label positions
    trace = heat["data"][0]
    assert trace["zmid"] == 0.0 and trace["zmin"] == -trace["zmax"]  # denoising: no effect (0) at the centre
    assert "normalised" in trace["colorbar"]["title"]["text"] and "sufficient" in heat["layout"]["title"]["text"]
    assert heat["layout"]["xaxis"]["title"]["text"] and heat["layout"]["yaxis"]["title"]["text"] == "layer"


def test_noising_heatmap_is_centred_on_its_no_effect_value(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "patching", "noising")
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid)
    assert_clean(at)
    result = load_result(RunStore(store_root).get(rid), "sweep0_resid_pre")
    trace = charts(at)[0]["data"][0]
    assert np.allclose(array(trace["z"]), result.mean().numpy(), atol=1e-6)
    assert trace["zmid"] == 1.0  # noising: a patch that changes nothing leaves the clean value, 1
    assert trace["zmin"] == pytest.approx(2.0 - trace["zmax"])
    assert trace["zmax"] == pytest.approx(1.0 + float((result.mean() - 1).abs().max()))
    assert "necessary" in charts(at)[0]["layout"]["title"]["text"]


def test_named_positions_label_the_axis_and_show_each_examples_token(
    store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = run_id(store_root, "patching", "denoising")
    run = RunStore(store_root).get(rid)
    result = load_result(run, "sweep3_resid_pre")
    assert result.positions == "named"
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid, **{f"result-{rid}": "sweep3_resid_pre"})
    assert_clean(at)
    heat, drill = charts(at)[:2]
    assert list(heat["data"][0]["x"]) == result.position_labels[: len(heat["data"][0]["x"])]
    assert heat["layout"]["xaxis"]["title"]["text"] == "named position"
    key = f"cell-{rid}-sweep3_resid_pre"
    io = result.position_labels.index("IO")
    at.selectbox(key=f"{key}-pos").set_value(io).run()
    assert_clean(at)
    task = run.read_table("task")
    table = at.dataframe[-1].value
    assert list(table["patched token"]) == list(task["token IO"])
    assert [t.split(":")[1].strip() for t in table["patched token"]] == list(task["io"])
    assert list(table.columns)[-2:] == ["clean", "corrupt"]  # prompts last
    assert list(table.columns)[:3] == ["example", "patched token", "normalised"]  # key numbers first
    drill = charts(at)[1]
    assert [t.split("<br>")[1] for t in drill["layout"]["xaxis"]["ticktext"]] == list(task["token IO"])
    assert "normalised" in drill["layout"]["yaxis"]["title"]["text"]


def test_patching_cell_drilldown_shows_per_example_values_and_prompts(
    store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = run_id(store_root, "patching", "denoising")
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid)
    result = load_result(RunStore(store_root).get(rid), "sweep0_resid_pre")
    key = f"cell-{rid}-sweep0_resid_pre"
    at.selectbox(key=f"{key}-layer").set_value(1)
    at.selectbox(key=f"{key}-pos").set_value(result.coords["pos"][2]).run()
    assert_clean(at)
    table = at.dataframe[-1].value
    assert list(table["patched"]) == pytest.approx(result.values[:, 1, 2].tolist())
    assert list(table["normalised"]) == pytest.approx(result.normalized()[:, 1, 2].tolist())
    assert table["clean"].str.len().min() > 10 and "corrupt" in table


def test_patching_layer_by_head_and_three_axis_results(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "patching", "denoising")
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid)
    at.selectbox(key=f"result-{rid}").set_value("sweep1_head_z").run()
    assert_clean(at)
    heat = charts(at)[0]
    assert heat["data"][0]["x"][0] == "H0" and heat["data"][0]["y"][0] == "L0"
    at.selectbox(key=f"result-{rid}").set_value("sweep2_head_z_by_pos").run()
    assert_clean(at)
    heat = charts(at)[0]
    assert list(heat["data"][0]["y"]) == ["L1"] and list(heat["data"][0]["x"]) == ["H0", "H1"]


def test_patching_compares_denoising_with_noising(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "patching", "denoising")
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid)
    at.radio(key="patching-view").set_value("Compare runs").run()
    assert_clean(at)
    side_by_side, delta = charts(at)
    titles = [a["text"] for a in side_by_side["layout"]["annotations"]]
    assert titles[0].startswith("A: denoising") and titles[1].startswith("B: noising")
    assert delta["data"][0]["type"] == "heatmap" and "B minus A" in delta["layout"]["title"]["text"]
    store = RunStore(store_root)
    a = load_result(store.get(rid), "sweep0_resid_pre")
    b = load_result(store.get(run_id(store_root, "patching", "noising")), "sweep0_resid_pre")
    effect_a, effect_b = (r.quantity("normalized_effect").mean(0).numpy() for r in (a, b))
    assert np.allclose(effect_b, b.mean().numpy() - 1.0, atol=1e-6)  # noising effect: normalised minus 1
    panels = side_by_side["data"]
    assert np.allclose(array(panels[0]["z"]), effect_a, atol=1e-6) and np.allclose(array(panels[1]["z"]), effect_b, atol=1e-6)
    assert all(p["zmid"] == 0.0 for p in panels) and panels[0]["zmax"] == panels[1]["zmax"]
    assert np.allclose(array(delta["data"][0]["z"]), effect_b - effect_a, atol=1e-6)


def test_attribution_page_shows_the_stored_r_table_and_scatter(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "attribution")
    at = open_page(store_root, "views/attribution.py", monkeypatch)
    assert_clean(at)
    stored = load_comparison(RunStore(store_root).get(rid)).pearson()
    shown = at.dataframe[0].value
    assert np.allclose(shown.to_numpy(dtype=float), stored.to_numpy(dtype=float), equal_nan=True)
    recall = charts(at)[1]
    names = [t["name"] for t in recall["data"]]
    assert "atp (signed)" in names and "atp* (scores)" in names and any("bound" in n for n in names)
    assert recall["layout"]["xaxis"]["type"] == "log"
    scatter = charts(at)[2]
    assert {t["name"].split(" ")[0] for t in scatter["data"][:-1]} == {"atp", "atp*"}
    at.selectbox(key=f"component-{rid}").set_value("head_z").run()
    assert_clean(at)
    comparison = load_comparison(RunStore(store_root).get(rid))
    heat = charts(at)[-1]
    exact, estimate = heat["data"][:2]
    assert np.allclose(array(exact["z"]), comparison.exact["head_z"].effects().mean(0).numpy(), atol=1e-6)
    method = at.selectbox(key=f"heat-{rid}-head_z").value
    assert np.allclose(array(estimate["z"]), comparison.estimates[method]["head_z"].effects().mean(0).numpy(), atol=1e-6)
    assert exact["zmid"] == estimate["zmid"] == 0.0 and exact["zmin"] == -exact["zmax"]
    assert "effect" in heat["layout"]["title"]["text"]
    assert heat["layout"]["xaxis"]["title"]["text"] == "head" and heat["layout"]["yaxis"]["title"]["text"] == "layer"


def test_feature_circuit_page_shows_curves_costs_and_latent_contexts(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "feature_circuit")
    at = open_page(store_root, "views/features.py", monkeypatch)
    assert_clean(at)
    faithful, complete = charts(at)[0], charts(at)[1]
    assert {t["name"] for t in faithful["data"]} == {"atp", "ig"}
    curves = RunStore(store_root).get(rid).read_table("faithfulness")
    atp = curves[curves.method == "atp"]
    assert array(faithful["data"][0]["y"]) == pytest.approx(atp["faithfulness"].tolist())
    assert array(complete["data"][0]["y"]) == pytest.approx(atp["complement"].tolist())
    assert set(at.dataframe[0].value["method"]) == {"atp", "ig", "exact"}
    assert at.selectbox(key=f"latent-{rid}").value.startswith("blocks.1.hook_resid_post #")
    shown = at.get("html")
    assert (shown and "<span" in shown[0].proto.body) or any("never fired" in i.value for i in at.info)


def test_sae_page_metrics_and_latent_browser(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "sae")
    at = open_page(store_root, "views/sae.py", monkeypatch)
    assert_clean(at)
    metrics = RunStore(store_root).get(rid).read_table("metrics")
    assert at.dataframe[0].value["l0"].tolist() == pytest.approx(metrics["l0"].tolist())
    features = RunStore(store_root).get(rid).read_table("features-topk")
    alive = features[features["density"] > 0].sort_values("max_activation", ascending=False)
    assert at.selectbox(key=f"latent-{rid}-topk").value == alive["latent"].iloc[0]
    contexts = at.get("html")[0].proto.body
    assert contexts.count("<span") >= 1 and "rgba(255, 140, 0" in contexts
    latent = int(alive["latent"].iloc[-1])
    at.text_input(key=f"search-{rid}-topk").set_value(str(latent)).run()
    assert_clean(at)
    assert at.selectbox(key=f"latent-{rid}-topk").value == latent
    assert any("latent " + str(latent) in str(chart["layout"].get("title")) for chart in charts(at))


def test_sae_page_shows_examples_across_the_activation_range(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "sae")
    at = open_page(store_root, "views/sae.py", monkeypatch)
    assert_clean(at)
    latent = at.selectbox(key=f"latent-{rid}-topk").value
    stats = RunStore(store_root).get(rid).read_tensors("features-topk")
    edges, counts = stats["interval_edges"][latent].tolist(), stats["interval_counts"][latent].tolist()
    filled = (stats["interval_rows"][latent] >= 0).sum(1).tolist()
    assert any("Examples across the activation range" in m.value for m in at.markdown)
    body = at.get("html")[1].proto.body
    headings = re.findall(r"activation ([\d.e+-]+) to ([\d.e+-]+): ([\d,]+) tokens?", body)
    assert len(headings) == len(counts) == 5  # the default number of intervals, highest first
    for (lo, hi, count), i in zip(headings, reversed(range(len(counts))), strict=True):
        assert (lo, hi) == (f"{edges[i]:.3g}", f"{edges[i + 1]:.3g}") and int(count.replace(",", "")) == counts[i]
    assert body.count("min-width: 4.5em") == sum(filled) >= 1  # one line per sampled example
    assert "rgba(255, 140, 0" in body and "outline" in body  # shaded and centred as the top contexts


def test_old_sae_runs_without_interval_examples_still_render(store_root: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    old = copy_run(store_root / run_id(store_root, "sae"), tmp_path, "sae-20990101-000000-a00007")
    path = old / "features-topk.safetensors"
    tensors = load_file(path)
    save_file({k: v for k, v in tensors.items() if not k.startswith("interval_")}, path)
    at = open_page(tmp_path, "views/sae.py", monkeypatch, run=old.name)
    assert_clean(at)
    assert len(at.get("html")) == 1 and "<span" in at.get("html")[0].proto.body  # top contexts only
    assert not any("activation range" in m.value for m in at.markdown)
    assert len(charts(at)) >= 4  # density, activation histogram and logit effects are still drawn


def test_sae_browser_reads_well(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "sae")
    at = open_page(store_root, "views/sae.py", monkeypatch)
    run = RunStore(store_root).get(rid)
    listing = next(frame.value for frame in at.dataframe if "top_logits" in frame.value.columns)
    tokens = [token for row in listing["top_logits"] for token in row]
    assert tokens and not any(token.startswith(" ") for token in tokens)  # a leading space shows as ␣
    assert "latents match." in " ".join(c.value for c in at.caption)
    latent = int(listing["latent"].iloc[0])
    at.text_input(key=f"search-{rid}-topk").set_value(str(latent)).run()
    assert_clean(at)
    assert any(c.value.startswith("1 latent matches. ") for c in at.caption)
    density = next(chart for chart in charts(at) if "firing density" in chart["layout"]["title"]["text"])
    n_tokens = int(run.read_table("metrics")["n_tokens"].iloc[0])
    assert f"over {n_tokens:,} held-out tokens" in density["layout"]["title"]["text"]
    features = run.read_table("features-topk")
    assert len(array(density["data"][0]["x"])) == len(features)  # every latent, dead ones included
    marked = density["layout"]["shapes"][0]
    chosen = float(features.loc[features["latent"] == latent, "log10_density"].iloc[0])
    assert marked["x0"] == pytest.approx(chosen)
    at = open_page(store_root, "views/overview.py", monkeypatch)
    shown = at.dataframe[0].value
    assert shown.loc[shown["kind"] == "sae", "dataset"].tolist() == ["text: corpus.txt"]


def test_model_page_runs_a_tiny_model(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(store_root, "views/model.py", monkeypatch, model_name="tiny-llama")
    assert_clean(at)
    next_token, lens, attention = charts(at)
    assert sum(next_token["data"][0]["x"]) <= 1.0 + 1e-6
    assert lens["data"][0]["y"] == ["embed", "L0", "L1", "L2"]
    assert "layer 1 head 0" in attention["layout"]["title"]["text"]
    at.selectbox(key="head").set_value(3).run()
    assert_clean(at)
    assert "head 3" in charts(at)[2]["layout"]["title"]["text"]


def test_model_page_says_when_a_model_cannot_load(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(store_root, "views/model.py", monkeypatch, model_name="no-such-model-here")
    assert not at.exception
    assert "Cannot load model" in at.error[0].value


# ------------------------------------------------------------------ empty store and bad runs


def test_empty_store_says_so_on_every_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for page in PAGES:
        at = open_page(tmp_path, page, monkeypatch)
        assert not at.exception and not at.error, page
        assert "No " in messages(at) and str(tmp_path) in messages(at), page


@pytest.mark.parametrize("damage", ["missing", "truncated", "corrupt"])
def test_damaged_patching_run_is_a_message(store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           damage: str) -> None:
    suffix = {"missing": "a00001", "truncated": "a00002", "corrupt": "a00003"}[damage]
    bad_id = f"patching-20990101-000000-{suffix}"
    bad = copy_run(store_root / run_id(store_root, "patching", "denoising"), tmp_path, bad_id)
    if damage == "missing":
        (bad / "sweep0_resid_pre.safetensors").unlink()
    elif damage == "truncated":
        path = bad / "sweep0_resid_pre.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    else:
        (bad / "manifest.json").write_text("{ not json")
    for page in ("views/patching.py", "views/overview.py"):
        at = open_page(tmp_path, page, monkeypatch, run=bad_id)
        assert not at.exception, [e.value for e in at.exception]
    at = open_page(tmp_path, "views/patching.py", monkeypatch, run=bad_id)
    expected = {"missing": "has no tensor file", "truncated": "Cannot read", "corrupt": "cannot be read"}[damage]
    assert expected in messages(at)


def test_running_and_failed_runs_are_announced(store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(tmp_path)
    running = store.create("patching", {"sweeps": [{"sweep": "resid_pre"}]}, model="tiny-llama")
    at = open_page(tmp_path, "views/patching.py", monkeypatch, run=running.id)
    assert not at.exception and "still being written" in messages(at) and "No sweep" in messages(at)
    assert not at.get("progress")  # nothing recorded yet: no bar rather than a made-up one
    running.set_progress(64, 256, "cells", stage="sweep0_resid_pre shard 0")
    at = open_page(tmp_path, "views/patching.py", monkeypatch, run=running.id)
    assert progress_bars(at) == [(25, "running: 64 of 256 cells (last: sweep0_resid_pre shard 0)")]

    training = store.create("sae", {"saes": []}, model="tiny-llama")
    training.set_progress(3, 10, "training steps")
    at = open_page(tmp_path, "views/sae.py", monkeypatch, run=training.id)
    assert not at.exception and "when training finishes" in messages(at)
    assert progress_bars(at) == [(30, "running: 3 of 10 training steps")]

    attribution = store.create("attribution", {"x": 1}, model="tiny-llama")
    at = open_page(tmp_path, "views/attribution.py", monkeypatch, run=attribution.id)
    assert not at.exception and "not stored its comparison yet" in messages(at)

    failed = copy_run(store_root / run_id(store_root, "patching", "denoising"), tmp_path, "patching-20990101-000000-a00004")
    RunStore(tmp_path).get(failed.name).fail(RuntimeError("out of memory"))
    at = open_page(tmp_path, "views/patching.py", monkeypatch, run=failed.name)
    assert not at.exception and "failed: RuntimeError: out of memory" in at.error[0].value
    assert "(it had finished " in at.error[0].value and not at.get("progress")
    assert charts(at), "a failed run still shows what it finished"


def test_every_writer_records_its_progress(store_root: Path) -> None:
    """Each kind of run in the fixture store ends with all of its units recorded as done."""
    recorded = {info.kind: info.progress for info in RunStore(store_root).list()}
    assert recorded["attribution"] == Progress(4, 4, "stages", "atp*")  # 2 exact sweeps, then 2 methods
    assert recorded["feature_circuit"] == Progress(4, 4, "stages", "faithfulness")
    assert recorded["sae"].unit == "training steps" and recorded["sae"].done == recorded["sae"].total > 0
    patching = RunStore(store_root).get(run_id(store_root, "patching", "noising"))
    cells = math.prod(load_result(patching, "sweep0_resid_pre").grid_shape)
    shards = math.ceil(cells / PatchConfig.model_validate(patching.config).shard_cells)
    assert patching.progress == Progress(cells, cells, "cells", f"sweep0_resid_pre shard {shards - 1}")


def test_an_attribution_run_is_shown_while_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Open the app after each stage of a real attribution run: listed as running with its progress, and
    its page shows the stages stored so far; once finished it is shown as any finished run."""
    seen: dict[str, tuple[AppTest, AppTest]] = {}

    def look(stage: str) -> None:
        seen[stage] = (open_page(tmp_path, "views/overview.py", monkeypatch),
                       open_page(tmp_path, "views/attribution.py", monkeypatch))

    config = AttributionConfig.model_validate({
        "model": "tiny-llama", "task": {"n": 3, "seed": 0}, "methods": ["atp"],
        "sweeps": [{"sweep": "resid_pre", "positions": [-3, -2, -1]}, {"sweep": "head_z"}],
    })
    run, comparison = run_attribution(config, RunStore(tmp_path), progress=look)
    assert list(seen) == ["exact resid_pre", "exact head_z", "atp"]
    for done, (stage, (overview, page)) in enumerate(seen.items(), start=1):
        assert_clean(overview)
        assert_clean(page)
        row = overview.dataframe[0].value.set_index("id").loc[run.id]
        assert (row["status"], row["progress"]) == ("running", f"{done}/3 stages")
        assert progress_bars(page) == [(int(done / 3 * 100), f"running: {done} of 3 stages (last: {stage})")]
        assert "still being written" in messages(page)
    exact_only = seen["exact head_z"][1]
    assert "No method has been compared" in messages(exact_only)
    assert any("2 of 3 stages stored: exact resid_pre, exact head_z; not yet: atp" in c.value for c in exact_only.caption)
    heat = charts(exact_only)[0]
    assert np.allclose(array(heat["data"][0]["z"]), comparison.exact["resid_pre"].effects().mean(0).numpy(), atol=1e-6)
    with_method = seen["atp"][1]
    assert "No method" not in messages(with_method)
    shown = with_method.dataframe[0].value
    assert list(shown.columns) == ["atp"] and np.allclose(
        shown.to_numpy(dtype=float), comparison.pearson().to_numpy(dtype=float), equal_nan=True)

    overview, page = (open_page(tmp_path, "views/overview.py", monkeypatch),
                      open_page(tmp_path, "views/attribution.py", monkeypatch))
    assert_clean(overview)
    assert_clean(page)
    row = overview.dataframe[0].value.set_index("id").loc[run.id]
    assert row["status"] == "finished" and pd.isna(row["progress"])
    assert not page.get("progress") and not page.warning and not any("Partial" in c.value for c in page.caption)
    assert charts(page)[1]["layout"]["xaxis"]["type"] == "log"  # the recall curves, stored when the run finishes


def test_the_root_address_lands_on_the_overview_and_keeps_the_query(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERP_RUNS_DIR", str(store_root))
    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT)
    at.query_params["run"] = run_id(store_root, "sae")
    at.run()
    assert_clean(at)
    assert at.title[0].value == "Runs" and at.dataframe[0].value["kind"].tolist()
    assert at.query_params["run"] == run_id(store_root, "sae")


def test_delete_needs_the_run_id_typed(store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = copy_run(store_root / run_id(store_root, "sae"), tmp_path, "sae-20990101-000000-a00005").name
    keeper = copy_run(store_root / run_id(store_root, "attribution"), tmp_path, "attribution-20990101-000000-a00006").name
    at = open_page(tmp_path, "views/overview.py", monkeypatch)
    at.selectbox(key="delete-run").set_value(victim).run()
    assert at.button(key="delete-button").disabled
    at.text_input(key="delete-confirm").set_value("sae-wrong").run()
    assert at.button(key="delete-button").disabled
    at.text_input(key="delete-confirm").set_value(victim).run()
    at.button(key="delete-button").click().run()
    assert not at.exception
    assert [info.id for info in RunStore(tmp_path).list()] == [keeper]
    assert at.dataframe[0].value["id"].tolist() == [keeper]


# ------------------------------------------------------------------ links and state in the URL


def page_links(at: AppTest) -> list[tuple[str, dict[str, str]]]:
    from urllib.parse import parse_qsl

    return [(link.proto.page, dict(parse_qsl(link.proto.query_string))) for link in at.get("page_link")]


def test_a_head_cell_links_to_the_model_page_with_its_head_and_prompt(
    store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = run_id(store_root, "patching", "denoising")
    run = RunStore(store_root).get(rid)
    result = load_result(run, "sweep1_head_z")
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid, **{f"result-{rid}": "sweep1_head_z"})
    key = f"cell-{rid}-sweep1_head_z"
    at.selectbox(key=f"{key}-layer").set_value(2)
    at.selectbox(key=f"{key}-head").set_value(3).run()
    assert_clean(at)
    assert at.query_params["result"] == "sweep1_head_z" and at.query_params["layer"] == "2"
    assert at.query_params["head"] == "3"
    example = int(result.quantity("effect")[:, 2, 3].abs().argmax())
    (page, params), = [link for link in page_links(at) if "model" in link[0]]
    assert params == {"model": "tiny-llama", "layer": "2", "head": "3", "prompt": run.read_table("task")["clean"][example]}

    model_page = open_page(store_root, "views/model.py", monkeypatch)
    model_page.query_params.update(params)
    model_page.run()
    assert_clean(model_page)
    assert model_page.selectbox(key="layer").value == 2 and model_page.selectbox(key="head").value == 3
    assert model_page.text_area(key="prompt").value == params["prompt"]
    assert "layer 2 head 3" in charts(model_page)[2]["layout"]["title"]["text"]


def test_a_strongest_cells_row_opens_that_cell(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "patching", "noising")
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid)
    result = load_result(RunStore(store_root).get(rid), "sweep0_resid_pre")
    strongest = at.dataframe[0].value
    distance = (strongest["normalised mean"] - 1.0).abs()  # noising: ranked by distance from 1
    assert list(distance) == sorted(distance, reverse=True)
    key = f"cell-{rid}-sweep0_resid_pre"
    assert (at.selectbox(key=f"{key}-layer").value, at.selectbox(key=f"{key}-pos").value) == (
        int(strongest["layer"].iloc[0]), int(strongest["pos"].iloc[0]))
    assert result.coords["pos"]


def test_sidebar_navigation_keeps_the_run_and_the_cell(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_id(store_root, "patching", "noising")
    at = open_page(store_root, "views/patching.py", monkeypatch, run=rid)
    key = f"cell-{rid}-sweep0_resid_pre"
    result = load_result(RunStore(store_root).get(rid), "sweep0_resid_pre")
    at.selectbox(key=f"{key}-pos").set_value(result.coords["pos"][1]).run()
    at.switch_page("views/overview.py").run()
    at.query_params.clear()  # what the sidebar's links do
    at.switch_page("views/patching.py").run()
    assert_clean(at)
    assert at.selectbox(key="run-patching").value == rid
    assert at.selectbox(key=f"{key}-pos").value == result.coords["pos"][1]


def test_an_sae_latent_runs_on_the_model_page(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from interp.sae import load as load_sae

    rid = run_id(store_root, "sae")
    at = open_page(store_root, "views/sae.py", monkeypatch)
    latent = at.selectbox(key=f"latent-{rid}-topk").value
    (page, params), = [link for link in page_links(at) if "model" in link[0]]
    assert params == {"model": "tiny-llama", "sae_run": rid, "sae": "topk", "latent": str(latent)}
    model_page = open_page(store_root, "views/model.py", monkeypatch)
    model_page.query_params.update(params)
    model_page.run()
    assert_clean(model_page)
    body = [h.proto.body for h in model_page.get("html") if "<span" in h.proto.body][-1]
    shown = [float(v) for v in __import__("re").findall(r'title="([-0-9.]+)"', body)]
    model, sae = load_model("tiny-llama"), load_sae(RunStore(store_root).get(rid).path / "saes" / "topk")
    prompt = model_page.text_area(key="prompt").value
    _, cache = model.run_with_cache(prompt, sites=[sae.site])
    with torch.no_grad():
        expected = sae.encode(cache[sae.site][0]).dense()[:, latent]
    assert shown == pytest.approx(expected.tolist(), abs=1e-3)
