"""End to end: ``interp app`` serves the real app, and headless Chromium draws and clicks the heatmap.

Uses Debian's ``chromium`` through Playwright with the system browser's executable path (Playwright
cannot download browsers here; ``scripts/install_browser.sh`` installs the Debian package). The
server is started through :func:`interp.app_cli.app`, so the command the README gives is what runs.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from interp.models import load_model
from interp.patching.config import PatchConfig
from interp.patching.persist import load_result
from interp.patching.runner import run_config
from interp.runs import RunStore
from interp.tasks import ioi_task
from tests.app_server import free_port, running_app

pytestmark = pytest.mark.slow

def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run scripts/install_browser.sh (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    task = {"n": 4, "seed": 0, "corruption": "abc", "order": "mixed"}
    width = ioi_task(load_model("tiny-llama"), **task).clean.shape[1]
    config = {"model": "tiny-llama", "task": task,
              "sweeps": [{"sweep": "resid_pre", "positions": list(range(width - 8, width))}, {"sweep": "head_z"}]}
    run_config(PatchConfig.model_validate(config), RunStore(root))
    return root


@pytest.fixture(scope="module")
def server(store_root: Path) -> Iterator[str]:
    """``interp app --runs STORE --headless`` on a free port; yields its URL."""
    port = free_port()
    command = [sys.executable, "-c", "import typer; from interp.app_cli import app; typer.run(app)",
               "--runs", str(store_root), "--port", str(port), "--headless"]
    with running_app(command, port):
        yield f"http://127.0.0.1:{port}"


def test_patching_heatmap_renders_and_a_click_opens_the_cell(server: str, store_root: Path, tmp_path: Path) -> None:
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    run_id = RunStore(store_root).list("patching")[0].id
    result = load_result(RunStore(store_root).get(run_id), "sweep0_resid_pre")
    n_layers, n_pos = result.grid_shape
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{server}/patching?run={run_id}")
            chart = page.locator(".stPlotlyChart").first
            expect(chart.locator(".nsewdrag")).to_be_visible(timeout=60_000)
            expect(page.locator("[data-testid=stException]")).to_have_count(0)

            heat_image = chart.locator(".heatmaplayer image")
            expect(heat_image).to_have_count(1)
            assert len(heat_image.get_attribute("href") or "") > 200, "the heatmap image is empty"
            page.screenshot(path=str(tmp_path / "patching.png"), full_page=True)
            pixels = Image.open(io.BytesIO(chart.screenshot())).convert("RGB")
            assert len(pixels.getcolors(maxcolors=1 << 20) or []) > 20, "the chart area is blank"

            layer, column = n_layers - 1, n_pos - 2
            box = chart.locator(".nsewdrag").bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + (column + 0.5) * box["width"] / n_pos,
                             box["y"] + (layer + 0.5) * box["height"] / n_layers)
            pos = result.coords["pos"][column]
            label = result.position_labels[pos]
            expect(page.get_by_text(f"resid_pre at layer=L{layer}, pos={label}")).to_be_visible(timeout=30_000)
            expect(page.get_by_role("combobox", name="layer")).to_have_value(f"L{layer}")
            expect(page.get_by_role("combobox", name="pos")).to_have_value(label)
            expect(page.locator("[data-testid=stDataFrame] >> visible=true").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "patching-cell.png"), full_page=True)
        finally:
            browser.close()


def test_a_head_cell_opens_the_model_page_on_that_head_and_prompt(server: str, store_root: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    store = RunStore(store_root)
    run_id = store.list("patching")[0].id
    result = load_result(store.get(run_id), "sweep1_head_z")
    task = store.get(run_id).read_table("task")
    n_layers, n_heads = result.grid_shape
    layer, head = n_layers - 1, 1
    effect = result.quantity("effect")[:, layer, head]
    example = int(effect.abs().argmax())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{server}/patching?run={run_id}&result=sweep1_head_z")
            chart = page.locator(".stPlotlyChart").first
            expect(chart.locator(".nsewdrag")).to_be_visible(timeout=60_000)
            box = chart.locator(".nsewdrag").bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + (head + 0.5) * box["width"] / n_heads,
                             box["y"] + (layer + 0.5) * box["height"] / n_layers)
            expect(page.get_by_role("combobox", name="head")).to_have_value(f"H{head}", timeout=30_000)
            assert f"head={head}" in page.url and f"layer={layer}" in page.url  # the chosen cell is in the address
            link = page.get_by_role("link", name=f"Open layer {layer} head {head} on example {example}'s prompt")
            expect(link).to_be_visible(timeout=30_000)
            link.click()
            expect(page.get_by_role("combobox", name="Attention head")).to_have_value(str(head), timeout=90_000)
            expect(page.get_by_role("combobox", name="Attention layer")).to_have_value(str(layer))
            expect(page.get_by_label("Prompt")).to_have_value(task["clean"][example])
            expect(page.locator(".stPlotlyChart").nth(2)).to_contain_text(f"layer {layer} head {head}", timeout=60_000)
            expect(page.locator("[data-testid=stException]")).to_have_count(0)
        finally:
            browser.close()


def test_the_overview_has_its_own_address_and_links_to_a_run(server: str, store_root: Path) -> None:
    """``/runs`` is the overview (not "Page not found"), ``/`` moves on to it, and its link opens a run with ``?run=``."""
    from playwright.sync_api import expect, sync_playwright

    run_id = RunStore(store_root).list("patching")[0].id
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{server}/runs")
            expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Page not found")).to_have_count(0)
            expect(page.locator("[data-testid=stException]")).to_have_count(0)

            page.goto(server)
            expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=60_000)
            page.wait_for_url("**/runs", timeout=30_000)

            page.get_by_role("link", name="Open on the patching page").click()
            page.wait_for_url(f"**/patching?run={run_id}*", timeout=30_000)
            expect(page.locator(".stPlotlyChart").first.locator(".nsewdrag")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Page not found")).to_have_count(0)
        finally:
            browser.close()
