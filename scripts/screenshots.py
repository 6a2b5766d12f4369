"""Screenshots of every page of the app, taken in headless Chromium from the real server: docs/app-*.png.

    python scripts/screenshots.py --runs /tmp/demo-runs --make     # build the store first, then shoot
    python scripts/screenshots.py --runs /tmp/demo-runs            # shoot an existing store

``--make`` fills the store on the embedded default model (about 15 minutes on a 2-core CPU):

* patching: the README's command, ``python -m interp patch data/ioi_demo.yaml --runs RUNS``;
* attribution: :data:`ATTRIBUTION`, the shipped ``data/ioi_attribution.yaml`` cut to 8 prompts
  and the resid_pre and head_z component types, so it takes minutes rather than an hour;
* SAE: :data:`SAE`, a TopK SAE on layer 15 trained on 200k tokens of the shipped demo corpus
  (``data/sae_topk.yaml`` trains on 1M).

The server is started as ``interp app --runs RUNS --headless`` (:func:`interp.app_cli.app`) and
driven with Playwright through Debian's chromium (``scripts/install_browser.sh``). On the patching
page the strongest cell of each heatmap is clicked, so the shots show the per-example drill-down;
the strongest head's link then opens the model page on that head and the example's prompt (the
model page's shot). With a second patching run (e.g. ``--set direction=noising``), the compare view
is shot too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from interp.patching.persist import result_names
from interp.runs import RunStore

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 1400
ATTRIBUTION = {
    "model": "smollm2-135m",
    "task": {"kind": "ioi", "n": 8, "seed": 0, "corruption": "abc"},
    "methods": ["atp", "atp+qk", "atp*", "relp", "ig"],
    "sweeps": [{"sweep": "resid_pre"}, {"sweep": "head_z"}],
}
SAE = {
    "model": "smollm2-135m",
    "device": "cpu",
    "training_tokens": 204_800,
    "checkpoint_every": 0,
    "data": {"source": {"kind": "demo"}, "context_size": 128, "max_rows": 240, "eval_rows": 16},
    "store": {"batch_size": 4096, "buffer_rows": 64, "model_batch_size": 16, "cache": False},
    "optim": {"warmup_steps": 5, "decay_steps": 10, "dead_after_tokens": 100_000},
    "features": {"top_k": 12, "context": 8, "n_logits": 10},
    "saes": [{"name": "topk-k32", "site": "blocks.15.hook_resid_post", "d_sae": 2048,
              "activation": {"kind": "topk", "k": 32}}],
}


def make_store(runs: Path) -> None:
    """One run of each kind on the default model (see the module docstring)."""
    from interp.attribution.config import AttributionConfig
    from interp.attribution.runner import run_attribution
    from interp.config import validate
    from interp.sae import TrainConfig, train

    subprocess.run([sys.executable, "-m", "interp", "patch", str(ROOT / "data" / "ioi_demo.yaml"), "--runs", str(runs)],
                   check=True)
    run_attribution(AttributionConfig.model_validate(ATTRIBUTION), RunStore(runs))
    train(validate(SAE, TrainConfig), RunStore(runs), progress=False)


def serve(runs: Path) -> tuple[subprocess.Popen, str]:
    """``interp app --runs RUNS --headless`` on a free port, once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-c", "import typer; from interp.app_cli import app; typer.run(app)",
               "--runs", str(runs), "--port", str(port), "--headless"]
    process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the app exited with {process.returncode}") from None
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("the app did not start within 90 s")


def settle(page: Page, charts: int, timeout: float = 120_000) -> None:
    """Wait until ``charts`` plotly charts are drawn and Streamlit has stopped running."""
    expect(page.locator(".stPlotlyChart .main-svg").nth(charts - 1)).to_be_attached(timeout=timeout)
    expect(page.locator("[data-testid=stStatusWidget]")).to_have_count(0, timeout=timeout)
    expect(page.locator("[data-testid=stException]")).to_have_count(0)
    time.sleep(1.5)


def shoot(page: Page, path: Path) -> None:
    """A screenshot of the whole page (the viewport grows to the content's height first)."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], section.main, .main')]"
        ".map(e => e.scrollHeight), document.body.scrollHeight)"
    )
    page.set_viewport_size({"width": WIDTH, "height": int(min(max(height, 900), 5000))})
    time.sleep(1.0)
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}")


def click_strongest_cell(page: Page, runs: Path, run_id: str, name: str | None = None) -> tuple[int, int]:
    """Click the heatmap cell farthest from no effect in one result of the run (default: its first);
    returns the cell's (row, column) coordinates."""
    from interp.patching.persist import load_result, result_names

    run = RunStore(runs).get(run_id)
    result = load_result(run, name or result_names(run)[0])
    mean = result.mean()
    row, column = divmod(int((mean - result.no_effect("normalized")).abs().argmax()), mean.shape[1])
    box = page.locator(".stPlotlyChart .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + (column + 0.5) * box["width"] / mean.shape[1],
                     box["y"] + (row + 0.5) * box["height"] / mean.shape[0])
    expect(page.get_by_text(f"{result.sweep} at layer=L{result.coords['layer'][row]}")).to_be_visible(timeout=60_000)
    return result.coords[result.axes[0]][row], result.coords[result.axes[1]][column]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="runs store to show")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go (default: docs/)")
    parser.add_argument("--make", action="store_true", help="fill the store on the default model first")
    args = parser.parse_args()
    runs = args.runs.expanduser().absolute()
    if args.make:
        make_store(runs)
    latest = {kind: RunStore(runs).list(kind) for kind in ("patching", "attribution", "sae")}
    missing = [kind for kind, infos in latest.items() if not infos]
    if missing:
        raise SystemExit(f"{runs} has no {', '.join(missing)} run: run with --make, or make them with the CLI")
    browser_path = shutil.which("chromium")
    if browser_path is None:
        raise SystemExit("Debian's chromium is not installed: run scripts/install_browser.sh")
    args.out.mkdir(parents=True, exist_ok=True)
    process, url = serve(runs)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
            page = browser.new_page(viewport={"width": WIDTH, "height": 1200})

            page.goto(f"{url}/")
            expect(page.locator("[data-testid=stDataFrame]").first).to_be_visible(timeout=60_000)
            time.sleep(2)
            shoot(page, args.out / "app-runs.png")

            patching = latest["patching"][0].id
            page.set_viewport_size({"width": WIDTH, "height": 1200})
            page.goto(f"{url}/patching?run={patching}")
            settle(page, 1)
            click_strongest_cell(page, runs, patching)
            settle(page, 2)
            shoot(page, args.out / "app-patching.png")

            heads = next(n for n in result_names(RunStore(runs).get(patching)) if n.endswith("head_z"))
            page.set_viewport_size({"width": WIDTH, "height": 1200})
            page.goto(f"{url}/patching?run={patching}&result={heads}")
            settle(page, 1)
            layer, head = click_strongest_cell(page, runs, patching, heads)
            settle(page, 2)
            shoot(page, args.out / "app-patching-heads.png")

            # the head's link opens the model page on that head and the example's prompt
            page.get_by_role("link", name=f"Open layer {layer} head {head} on example").click()
            settle(page, 3, timeout=300_000)
            shoot(page, args.out / "app-model.png")

            if len(latest["patching"]) > 1:
                page.set_viewport_size({"width": WIDTH, "height": 1200})
                page.goto(f"{url}/patching?run={patching}")
                settle(page, 1)
                page.get_by_text("Compare runs").click()
                settle(page, 2)
                shoot(page, args.out / "app-patching-compare.png")

            page.set_viewport_size({"width": WIDTH, "height": 1200})
            page.goto(f"{url}/attribution?run={latest['attribution'][0].id}")
            settle(page, 3)
            shoot(page, args.out / "app-attribution.png")

            page.set_viewport_size({"width": WIDTH, "height": 1200})
            page.goto(f"{url}/sae?run={latest['sae'][0].id}")
            settle(page, 5)
            shoot(page, args.out / "app-sae.png")

            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
