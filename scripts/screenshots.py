"""Screenshots of every page of the app, taken in headless Chromium from the real server: docs/app-*.png.

    python scripts/screenshots.py --runs /tmp/demo-runs --make     # build the store first, then shoot
    python scripts/screenshots.py --runs /tmp/demo-runs            # shoot an existing store
    python scripts/screenshots.py --runs /tmp/smoke-runs --make --smoke   # tiny runs, PNGs to a temp dir

``--make`` fills the store with one run per stage of :data:`STAGES`, each the shipped demo config
of its command (``interp patch``, ``attribute``, ``sae train``, ``steer``, ``tcav``) cut down with
the CLI's ``--set`` overrides (fewer prompts, layers, random concepts and SAE tokens), aiming at
about 15 minutes for the whole store on a quiet 2-core CPU:

* ``patching``: the README's main job, ``interp patch data/ioi_demo.yaml`` (16 IOI prompts, the
  residual stream at named positions and every head);
* ``noising``: the same job with ``direction=noising``, for the patching page's compare view;
* ``attribution``: ``data/ioi_attribution.yaml`` on 8 prompts, its ``resid_pre`` and ``head_z``
  sweeps (six layers) and five methods;
* ``sae``: ``data/feature_circuit_saes.yaml`` (three TopK SAEs, 160k tokens from cached
  activations of ~22k tokens), browsed on the SAE page and used by the feature circuit;
* ``features``: ``data/feature_circuit_demo.yaml`` on that SAE run, exact patching of each method's
  top 20 nodes, IG with 5 steps;
* ``steering``: ``data/steer_demo.yaml`` from 64 pairs; ``dac``: ``data/dac_demo.yaml`` as shipped;
* ``function_vectors``: ``data/function_vectors_demo.yaml`` with 6 AIE prompts, 5 injection layers;
* ``tcav``: ``data/tcav_demo.yaml`` at 7 layers against 5 random concepts, without the global CAV.

Every stage is resumable: a finished run of its kind whose stored config agrees with every
``--set`` of the stage is reused, and an unfinished one (a crash, Ctrl-C) is continued with
``--resume``, so a rerun after a failure costs only what was left; a stage that fails is reported
and the others still run (and the pages that do not need it are still shot). ``--smoke`` shrinks every stage
much further (a few prompts, layers and tokens: 14 minutes for the store on a 2-core machine at load
average 5, then under 2 minutes for the shots) to check that each page renders;
its PNGs go to a temporary directory unless ``--out`` is given, and they are not fit for the docs.

The server is started as ``interp app --runs RUNS --headless`` (:func:`interp.app_cli.app`) and
driven with Playwright through Debian's chromium (``scripts/install_browser.sh``). Each shot of
:data:`SHOTS` opens its page in a state worth showing: on the patching page the strongest cell of
each heatmap is clicked (the per-example drill-down), and the strongest head's link then opens the
model page on that head and the example's prompt; the SAE browser opens its strongest latent; the
steering page shows its effect-versus-KL curve and, in a second shot, the DAC intensities. A page
that fails (a timeout, or an exception drawn on the page) is named with the reason, the other pages
are still shot, and the script exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect, sync_playwright

from interp.runs import CORRUPT, FINISHED, RunStore

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 1400
STAGE_TIMEOUT = 3600  # seconds; one stage on a loaded machine may take many times its quiet-machine time
PAGE_TIMEOUT = 180_000  # milliseconds to wait for a page to draw
MODEL_TIMEOUT = 300_000  # the model page loads the model into the server first


@dataclass(frozen=True)
class Stage:
    """One run of ``--make``: ``interp COMMAND... CONFIG --set KEY=VALUE...`` writing a run of ``kind``.

    ``sets`` are the overrides (values as Python, passed as JSON, which YAML reads); ``smoke``
    replaces some of them for ``--smoke`` and may only name keys of ``sets``, so that a smoke run is
    never taken for a full one. ``links`` maps a key to the stage whose run id it takes.
    """

    name: str
    kind: str
    command: tuple[str, ...]
    sets: dict[str, Any]
    smoke: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def settings(self, smoke: bool, ids: dict[str, str]) -> dict[str, Any]:
        return {**self.sets, **(self.smoke if smoke else {}), **{key: ids[stage] for key, stage in self.links.items()}}


IOI_SWEEPS = [{"sweep": "resid_pre", "positions": "named"}, {"sweep": "head_z"}]
SMOKE_LAYERS = [0, 15, 29]
ATTRIBUTION_LAYERS = [0, 5, 10, 15, 20, 25]  # the exact sweeps' layers in data/ioi_attribution.yaml
SMOKE_IOI_SWEEPS = [{"sweep": "resid_pre", "positions": "named", "layers": SMOKE_LAYERS},
                    {"sweep": "head_z", "layers": SMOKE_LAYERS}]
STAGES = (
    Stage("patching", "patching", ("patch", "data/ioi_demo.yaml"),
          {"task.n": 16, "direction": "denoising", "sweeps": IOI_SWEEPS},
          smoke={"task.n": 2, "sweeps": SMOKE_IOI_SWEEPS}),
    Stage("noising", "patching", ("patch", "data/ioi_demo.yaml"),
          {"task.n": 16, "direction": "noising", "sweeps": IOI_SWEEPS},
          smoke={"task.n": 2, "sweeps": SMOKE_IOI_SWEEPS}),
    Stage("attribution", "attribution", ("attribute", "data/ioi_attribution.yaml"),
          {"task.n": 8, "methods": ["atp", "atp+qk", "atp*", "relp", "ig"],
           "sweeps": [{"sweep": "resid_pre", "layers": ATTRIBUTION_LAYERS}, {"sweep": "head_z", "layers": ATTRIBUTION_LAYERS}],
           "ig.steps": 10},
          smoke={"task.n": 2, "sweeps": [{"sweep": "resid_pre", "layers": SMOKE_LAYERS},
                                         {"sweep": "head_z", "layers": SMOKE_LAYERS}], "ig.steps": 2}),
    Stage("sae", "sae", ("sae", "train", "data/feature_circuit_saes.yaml"),
          {"training_tokens": 160_000, "data.max_rows": 340, "optim.warmup_steps": 5, "optim.decay_steps": 15},
          smoke={"training_tokens": 8192, "data.max_rows": 40, "optim.warmup_steps": 1, "optim.decay_steps": 2}),
    Stage("features", "feature_circuit", ("attribute", "data/feature_circuit_demo.yaml"),
          {"task.n": 8, "exact_top": 20, "ig.steps": 5},
          smoke={"task.n": 2, "exact_top": 4, "ig.steps": 2}, links={"sae_run": "sae"}),
    Stage("steering", "steering", ("steer", "data/steer_demo.yaml"),
          {"pairs": 64, "sweep.max_new_tokens": 10},
          smoke={"pairs": 8, "sweep.max_new_tokens": 3}),
    Stage("dac", "dac", ("steer", "data/dac_demo.yaml"),
          {"properties.0.pairs": 16, "max_new_tokens": 12},
          smoke={"properties.0.pairs": 8, "max_new_tokens": 4}),
    Stage("function_vectors", "function_vectors", ("steer", "data/function_vectors_demo.yaml"),
          {"n_mean_prompts": 32, "n_effect_prompts": 6, "layers": [6, 8, 10, 12, 16]},
          smoke={"n_mean_prompts": 8, "n_effect_prompts": 1, "layers": [10]}),
    Stage("tcav", "tcav", ("tcav", "data/tcav_demo.yaml"),
          {"layers": [0, 5, 10, 15, 20, 25, 29], "n_random": 5, "gcav": None},
          smoke={"layers": [6, 12], "n_random": 2}),
)


def agrees(stored: Any, wanted: Any) -> bool:
    """Whether a stored config value holds ``wanted``: mappings may have more keys (defaults the
    validation filled in), lists must agree item by item, numbers by value."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(k in stored and agrees(stored[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(stored, list) and len(stored) == len(wanted) and all(map(agrees, stored, wanted))
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return isinstance(stored, (int, float)) and not isinstance(stored, bool) and float(stored) == float(wanted)
    return stored == wanted


def at(config: Any, key: str) -> Any:
    """The value at a dotted key of a stored config (a list index as an integer part); a unique
    object when it is missing, which agrees with nothing."""
    value = config
    for part in key.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return object()
    return value


def matching(store: RunStore, kind: str, settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(id, status) of the runs of ``kind`` whose config agrees with every setting, newest first."""
    found = []
    for info in store.list(kind):
        if info.status == CORRUPT:
            continue
        try:
            config = store.get(info.id).config
        except Exception as error:  # noqa: BLE001 - a run deleted or damaged since the listing is no match
            print(f"skipping run {info.id}: {error}", flush=True)
            continue
        if all(agrees(at(config, key), value) for key, value in settings.items()):
            found.append((info.id, info.status))
    return found


class StageError(Exception):
    """A ``--make`` stage that failed, ran too long, or wrote no run the script recognises."""


def run_stage(stage: Stage, runs: Path, settings: dict[str, Any], resume: str | None, timeout: float) -> int:
    command = [sys.executable, "-m", "interp", *stage.command[:-1], str(ROOT / stage.command[-1]), "--runs", str(runs)]
    for key, value in settings.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    if resume is not None:
        command += ["--resume", resume]
    print(f"[{stage.name}] {' '.join(command[1:])}", flush=True)
    try:
        return subprocess.run(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=timeout,
                              check=False).returncode
    except subprocess.TimeoutExpired:
        raise StageError(f"ran past {timeout:.0f} s and was stopped (raise --stage-timeout; a rerun continues "
                         "its run)") from None


def make_stage(stage: Stage, store: RunStore, settings: dict[str, Any], timeout: float) -> str:
    """The id of the stage's finished run: one already in the store, else the unfinished one
    continued, else a new one."""
    found = matching(store, stage.kind, settings)
    finished = [run_id for run_id, status in found if status == FINISHED]
    if finished:
        print(f"[{stage.name}] reusing run {finished[0]}", flush=True)
        return finished[0]
    started = time.perf_counter()
    unfinished = found[0][0] if found else None
    if unfinished is not None:
        print(f"[{stage.name}] continuing unfinished run {unfinished}", flush=True)
    code = run_stage(stage, store.root, settings, unfinished, timeout)
    if code != 0 and unfinished is not None:
        print(f"[{stage.name}] continuing {unfinished} failed (exit {code}); starting a new run", flush=True)
        code = run_stage(stage, store.root, settings, None, timeout)
    if code != 0:
        raise StageError(f"the command failed with exit status {code} (its error is printed above)")
    finished = [run_id for run_id, status in matching(store, stage.kind, settings) if status == FINISHED]
    if not finished:
        raise StageError(f"no finished {stage.kind} run in {store.root} agrees with the stage's settings {settings}: "
                         "the overrides and the stored config disagree")
    print(f"[{stage.name}] run {finished[0]} in {time.perf_counter() - started:.0f} s", flush=True)
    return finished[0]


def make_store(runs: Path, smoke: bool, timeout: float) -> tuple[dict[str, str], list[str]]:
    """Run every stage not already in the store; returns each stage's run id, and the failed stages
    (a stage that needs a failed one's run is not tried)."""
    store = RunStore(runs)
    ids: dict[str, str] = {}
    failed: list[str] = []
    for stage in STAGES:
        missing = [needed for needed in stage.links.values() if needed not in ids]
        if missing:
            failed.append(f"{stage.name}: not tried, it needs the run of stage {', '.join(missing)}")
            continue
        try:
            ids[stage.name] = make_stage(stage, store, stage.settings(smoke, ids), timeout)
        except StageError as error:
            failed.append(f"{stage.name}: {error}")
            print(f"[{stage.name}] FAILED: {error}", flush=True)
    return ids, failed


def existing_runs(runs: Path, smoke: bool) -> dict[str, str]:
    """Each stage's run in a store made earlier: the stage's own run if there is one, else the newest
    finished run of its kind (a store made by hand); stages with neither are left out."""
    store = RunStore(runs)
    ids: dict[str, str] = {}
    for stage in STAGES:
        if any(needed not in ids for needed in stage.links.values()):
            continue
        own = [i for i, status in matching(store, stage.kind, stage.settings(smoke, ids)) if status == FINISHED]
        others = [info.id for info in store.list(stage.kind) if info.status == FINISHED and info.id not in ids.values()]
        if own or others:
            ids[stage.name] = (own or others)[0]
    return ids


def serve(runs: Path) -> tuple[subprocess.Popen, str]:
    """``interp app --runs RUNS --headless`` on a free port, once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-c", "import typer; from interp.app_cli import app; typer.run(app)",
               "--runs", str(runs), "--port", str(port), "--headless"]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the app exited with {process.returncode} before answering") from None
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("the app did not answer within 120 s")


class PageError(Exception):
    """A page showed an exception, or did not reach the state its shot needs."""


def settle(page: Page, charts: int, timeout: float = PAGE_TIMEOUT) -> None:
    """Wait until ``charts`` plotly charts are drawn and Streamlit has stopped running; a page that
    drew an exception is an error carrying its text."""
    expect(page.locator(".stPlotlyChart .main-svg").nth(charts - 1)).to_be_attached(timeout=timeout)
    expect(page.locator("[data-testid=stStatusWidget]")).to_have_count(0, timeout=timeout)
    time.sleep(1.5)
    no_exception(page)


def no_exception(page: Page) -> None:
    shown = page.locator("[data-testid=stException]")
    if shown.count():
        raise PageError(f"the page shows an exception: {shown.first.inner_text()[:2000]}")


def open_page(page: Page, url: str) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 1200})
    page.goto(url)


def shoot(page: Page, path: Path) -> None:
    """A screenshot of the whole page (the viewport grows to the content's height first)."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], section.main, .main')]"
        ".map(e => e.scrollHeight), document.body.scrollHeight)"
    )
    page.set_viewport_size({"width": WIDTH, "height": int(min(max(height, 900), 5000))})
    time.sleep(1.0)
    no_exception(page)
    page.screenshot(path=str(path), full_page=True)


def choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.keyboard.press("ArrowDown")  # a click focuses the box; the key opens its list
    page.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option, timeout=PAGE_TIMEOUT)
    box.blur()  # no focus ring in the picture


def click_strongest_cell(page: Page, runs: Path, run_id: str, name: str | None = None) -> tuple[int, int]:
    """Click the heatmap cell farthest from no effect in one result of the run (default: its first);
    returns the cell's (row, column) coordinates."""
    from interp.patching.persist import load_result, result_names

    run = RunStore(runs).get(run_id)
    result = load_result(run, name or result_names(run)[0])
    mean = result.mean()
    row, column = divmod(int((mean - result.no_effect("normalized")).abs().argmax()), mean.shape[1])
    # plotly's own axis conversion: the plot area's bounding box is not the cells' span (padding,
    # reversed category axes), and a click one row off opens the wrong cell
    x, y = page.locator(".stPlotlyChart .js-plotly-plot").first.evaluate(
        """(plot, [row, column]) => {
            const layout = plot._fullLayout, frame = plot.getBoundingClientRect();
            return [frame.x + layout.xaxis._offset + layout.xaxis.c2p(column),
                    frame.y + layout.yaxis._offset + layout.yaxis.c2p(row)];
        }""", [row, column])
    page.mouse.click(x, y)
    expect(page.get_by_text(f"{result.sweep} at layer=L{result.coords['layer'][row]}")).to_be_visible(timeout=60_000)
    return result.coords[result.axes[0]][row], result.coords[result.axes[1]][column]


@dataclass(frozen=True)
class Shot:
    """One PNG of the page at ``path`` (its ``url_path`` in ``app/Home.py``): ``needs`` names the
    stages whose runs it shows; ``take`` brings the page to its state."""

    file: str
    page: str
    path: str
    needs: tuple[str, ...]
    take: Callable[[Page, str, Path, dict[str, str]], None]


def runs_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    open_page(page, f"{url}/")
    expect(page.locator("[data-testid=stDataFrame]").first).to_be_visible(timeout=PAGE_TIMEOUT)
    expect(page.locator("[data-testid=stStatusWidget]")).to_have_count(0, timeout=PAGE_TIMEOUT)
    time.sleep(2)


def patching_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    open_page(page, f"{url}/patching?run={ids['patching']}")
    settle(page, 1)
    click_strongest_cell(page, runs, ids["patching"])
    settle(page, 2)


def head_result(runs: Path, run_id: str) -> str:
    from interp.patching.persist import result_names

    names = [n for n in result_names(RunStore(runs).get(run_id)) if n.endswith("head_z")]
    if not names:
        raise PageError(f"patching run {run_id} has no head_z result to click")
    return names[0]


def heads_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    heads = head_result(runs, ids["patching"])
    open_page(page, f"{url}/patching?run={ids['patching']}&result={heads}")
    settle(page, 1)
    click_strongest_cell(page, runs, ids["patching"], heads)
    settle(page, 2)


def model_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    """The model page as the strongest head's link opens it: that head on the example's prompt."""
    heads = head_result(runs, ids["patching"])
    open_page(page, f"{url}/patching?run={ids['patching']}&result={heads}")
    settle(page, 1)
    layer, head = click_strongest_cell(page, runs, ids["patching"], heads)
    settle(page, 2)
    page.get_by_role("link", name=f"Open layer {layer} head {head} on example").click()
    expect(page.get_by_role("combobox", name="Attention head")).to_have_value(str(head), timeout=MODEL_TIMEOUT)
    settle(page, 3, timeout=MODEL_TIMEOUT)


def compare_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    open_page(page, f"{url}/patching?run={ids['patching']}")
    settle(page, 1)
    page.get_by_text("Compare runs", exact=True).click()
    expect(page.get_by_text("Result B", exact=True)).to_be_visible(timeout=PAGE_TIMEOUT)
    settle(page, 2)


def attribution_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    open_page(page, f"{url}/attribution?run={ids['attribution']}")
    settle(page, 3)


def sae_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    """The SAE browser with its first listed latent (the strongest by max activation) opened."""
    open_page(page, f"{url}/sae?run={ids['sae']}")
    settle(page, 5)
    expect(page.get_by_text("Top activating contexts")).to_be_visible(timeout=PAGE_TIMEOUT)


def features_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    open_page(page, f"{url}/features?run={ids['features']}")
    settle(page, 2)


def steering_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    """The strength sweep's effect-versus-KL curve, and the samples of the strongest positive strength."""
    open_page(page, f"{url}/steering?run={ids['steering']}")
    settle(page, 1)
    strengths = RunStore(runs).get(ids["steering"]).read_table("samples")["strength"]
    choose(page, "Strength", f"{max(strengths):g}")
    settle(page, 2)


def dac_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    open_page(page, f"{url}/steering?run={ids['dac']}")
    settle(page, 1)
    page.get_by_text("DAC", exact=True).click()
    expect(page.get_by_text("Samples", exact=True)).to_have_count(0, timeout=PAGE_TIMEOUT)
    settle(page, 1)


def concepts_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    open_page(page, f"{url}/concepts?run={ids['tcav']}")
    settle(page, 5)


def function_vectors_page(page: Page, url: str, runs: Path, ids: dict[str, str]) -> None:
    open_page(page, f"{url}/function_vectors?run={ids['function_vectors']}")
    settle(page, 2)


SHOTS = (
    Shot("app-runs.png", "Runs overview", "runs", (), runs_page),
    Shot("app-patching.png", "Activation patching (residual stream)", "patching", ("patching",), patching_page),
    Shot("app-patching-heads.png", "Activation patching (heads)", "patching", ("patching",), heads_page),
    Shot("app-patching-compare.png", "Activation patching (compare runs)", "patching", ("patching", "noising"),
         compare_page),
    Shot("app-model.png", "Model", "model", ("patching",), model_page),
    Shot("app-attribution.png", "Attribution vs exact", "attribution", ("attribution",), attribution_page),
    Shot("app-sae.png", "Sparse autoencoders", "sae", ("sae",), sae_page),
    Shot("app-features.png", "Feature circuits", "features", ("features",), features_page),
    Shot("app-steering.png", "Steering (strength sweep)", "steering", ("steering",), steering_page),
    Shot("app-steering-dac.png", "Steering (DAC)", "steering", ("dac",), dac_page),
    Shot("app-concepts.png", "Concepts (TCAV)", "concepts", ("tcav",), concepts_page),
    Shot("app-function-vectors.png", "Function vectors", "function_vectors", ("function_vectors",),
         function_vectors_page),
)


def shoot_all(runs: Path, out: Path, ids: dict[str, str], browser_path: str) -> tuple[list[str], list[str]]:
    """Take every shot whose runs exist; returns the lines for the shot pages and the failed ones."""
    done, failed = [], []
    debug = Path(tempfile.gettempdir()) / "interp-screenshots-failed"
    process, url = serve(runs)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
            for shot in SHOTS:
                missing = [stage for stage in shot.needs if stage not in ids]
                if missing:
                    failed.append(f"{shot.page} ({shot.file}): no run of stage {', '.join(missing)} in {runs}; "
                                  "run with --make")
                    continue
                page = browser.new_page(viewport={"width": WIDTH, "height": 1200})
                started = time.perf_counter()
                try:
                    shot.take(page, url, runs, ids)
                    shoot(page, out / shot.file)
                except Exception as error:  # noqa: BLE001 - one page's failure is reported and the others still shot
                    picture = debug / shot.file
                    try:
                        debug.mkdir(exist_ok=True)
                        page.screenshot(path=str(picture), full_page=True)
                    except Exception as unseen:  # noqa: BLE001 - the failure matters, not the picture of it
                        picture = f"none: {unseen}"
                    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    failed.append(f"{shot.page} ({shot.file}): {type(error).__name__}: {reason} "
                                  f"(page as it was: {picture})")
                    traceback.print_exc()
                else:
                    done.append(f"{shot.page}: {out / shot.file} ({time.perf_counter() - started:.0f} s)")
                    print(f"shot {shot.page}: {out / shot.file}", flush=True)
                finally:
                    page.close()
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return done, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="runs store to show (made with --make)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the PNGs go (default: docs/; a temporary directory with --smoke)")
    parser.add_argument("--make", action="store_true", help="fill the store first (stages already there are reused)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny runs that only check every page renders; never for the docs")
    parser.add_argument("--stage-timeout", type=float, default=STAGE_TIMEOUT, help="seconds one --make stage may take")
    args = parser.parse_args()
    runs = args.runs.expanduser().absolute()
    out = args.out or (Path(tempfile.mkdtemp(prefix="interp-screenshots-smoke-")) if args.smoke else ROOT / "docs")
    if args.smoke and out.resolve() == (ROOT / "docs").resolve():
        raise SystemExit("--smoke screenshots are not for the docs: give another --out")
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        raise SystemExit("Debian's chromium is not installed: run scripts/install_browser.sh")
    started = time.perf_counter()
    if args.make:
        ids, stage_failures = make_store(runs, args.smoke, args.stage_timeout)
    else:
        ids, stage_failures = existing_runs(runs, args.smoke), []
    made = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    done, failed = shoot_all(runs, out, ids, browser_path)
    print(f"\nstore {runs}: {made - started:.0f} s; shots: {time.perf_counter() - made:.0f} s")
    print(f"shot {len(done)} of {len(SHOTS)} pages:")
    for line in done:
        print(f"  {line}")
    if stage_failures:
        print(f"FAILED {len(stage_failures)} --make stage(s) (a rerun reuses the finished ones):")
        for line in stage_failures:
            print(f"  {line}")
    if failed:
        print(f"FAILED {len(failed)} page(s):")
        for line in failed:
            print(f"  {line}")
    if stage_failures or failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
