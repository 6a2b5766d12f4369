"""The Concepts page with AppTest on a TCAV run written by ``interp tcav`` on a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.runs import RunStore
from tests.app.test_app import array, assert_clean, charts, open_page, snapshot
from tests.concepts.test_cli import tiny_config


@pytest.fixture(scope="module")
def tcav_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tcav")
    root = tmp / "runs"
    result = CliRunner().invoke(app, ["tcav", str(tiny_config(tmp)), "--runs", str(root)])
    assert result.exit_code == 0, result.output
    return root


def test_concepts_page_shows_the_stored_grid_and_drilldown(tcav_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(tcav_store)
    run = RunStore(tcav_store).list("tcav")[0]
    tests = RunStore(tcav_store).get(run.id).read_table("tests")
    at = open_page(tcav_store, "views/concepts.py", monkeypatch, run=run.id)
    assert_clean(at)
    assert at.title[0].value == "Concepts (TCAV)"
    figures = charts(at)
    grid = figures[0]["data"][0]
    assert grid["type"] == "heatmap" and grid["x"] == ["french"] and grid["y"] == ["0", "2"]
    assert np.allclose(array(grid["z"]).ravel(), tests.concept_mean.to_numpy())
    stars = [row[0] for row in grid["text"]]
    assert stars == ["*" if s else "" for s in tests.significant]
    null = next(f for f in figures if f["data"][0]["type"] == "box")
    assert [trace["name"] for trace in null["data"]] == ["french", "random"] and len(array(null["data"][1]["y"])) == 3
    at.selectbox(key=f"layer-{run.id}").set_value(2).run()
    at.number_input(key=f"example-{run.id}").set_value(3).run()
    assert_clean(at)
    assert any("<mark>" in m.value for m in at.markdown)
    assert snapshot(tcav_store) == before
