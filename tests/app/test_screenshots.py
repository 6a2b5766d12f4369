"""``scripts/screenshots.py`` covers the app and the docs, and its ``--make`` stages are valid and resumable.

Nothing here runs a model or a browser: the stages' overrides are validated by the same loaders the
CLI uses, and the config a run would store (``model_dump``, normalised to JSON as the run store
writes it) must be recognised as the stage's, so a rerun reuses it instead of recomputing.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from interp.config import load_config, read_mapping
from interp.runs.jsonvalues import normalise

REPO = Path(__file__).resolve().parents[2]


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("screenshots", REPO / "scripts" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


shots = load_script()


def stored_config(stage: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The config a run of ``stage`` made with ``settings`` stores, loaded as its CLI command loads it."""
    path = REPO / stage.command[-1]
    command = stage.command[0]
    if command == "patch":
        from interp.patching.config import PatchConfig

        return normalise(load_config(path, PatchConfig, settings).model_dump(), "config")
    if command == "attribute":
        from interp.attribution.circuit import FeatureCircuitConfig
        from interp.attribution.config import AttributionConfig

        schema = FeatureCircuitConfig if read_mapping(path).get("kind") == "feature_circuit" else AttributionConfig
        return normalise(load_config(path, schema, settings).model_dump(), "config")
    if command == "sae":
        from interp.sae.config import TrainConfig

        return load_config(path, TrainConfig, settings).to_json()
    if command == "steer":
        from interp.steering.config import load_steer_config

        return normalise(load_steer_config(path, settings).model_dump(), "config")
    if command == "tcav":
        from interp.concepts.config import TCAVConfig

        return load_config(path, TCAVConfig, settings).model_dump(mode="json")
    raise AssertionError(f"no loader for {stage.command}")


def test_every_page_of_the_app_is_shot() -> None:
    home = (REPO / "app" / "Home.py").read_text()
    hidden = set(re.findall(r'url_path="(\w+)"[^)]*visibility="hidden"', home))  # the root's forwarder
    pages = set(re.findall(r'url_path="(\w+)"', home)) - hidden
    assert hidden == {"home"}
    assert len(pages) >= 9
    assert pages == {shot.path for shot in shots.SHOTS}


def test_the_docs_show_every_shot_and_only_shots() -> None:
    files = {shot.file for shot in shots.SHOTS}
    assert len(files) == len(shots.SHOTS)
    shown: set[str] = set()
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        shown |= set(re.findall(r"docs/(app-[\w.-]+\.png)", doc.read_text()))
    assert shown <= files, f"images the docs show that the script does not make: {sorted(shown - files)}"
    readme = set(re.findall(r"docs/(app-[\w.-]+\.png)", (REPO / "README.md").read_text()))
    assert readme == files, f"shots the README does not show: {sorted(files - readme)}"


def test_every_shot_needs_only_stages_that_exist() -> None:
    names = [stage.name for stage in shots.STAGES]
    assert len(set(names)) == len(names)
    for shot in shots.SHOTS:
        assert set(shot.needs) <= set(names), shot.file
    for index, stage in enumerate(shots.STAGES):
        assert set(stage.links.values()) <= set(names[:index]), f"{stage.name} links to a later stage"


@pytest.mark.parametrize("stage", shots.STAGES, ids=lambda stage: stage.name)
def test_a_stage_run_is_recognised_and_a_smoke_run_is_not_taken_for_it(stage: Any) -> None:
    assert set(stage.smoke) <= set(stage.sets), "smoke may only change the stage's own settings"
    ids = {name: f"sae-{name}" for name in stage.links.values()}
    full, smoke = stage.settings(False, ids), stage.settings(True, ids)
    assert stage.smoke and full != smoke
    stored_full, stored_smoke = stored_config(stage, full), stored_config(stage, smoke)
    for key, value in full.items():
        assert shots.agrees(shots.at(stored_full, key), value), f"{key} is not stored as given"
    for key, value in smoke.items():
        assert shots.agrees(shots.at(stored_smoke, key), value), f"{key} is not stored as given (smoke)"
    assert not all(shots.agrees(shots.at(stored_smoke, key), value) for key, value in full.items())


def test_the_two_patching_stages_are_told_apart() -> None:
    by_name = {stage.name: stage for stage in shots.STAGES}
    denoising, noising = by_name["patching"], by_name["noising"]
    stored = stored_config(noising, noising.settings(False, {}))
    assert not all(shots.agrees(shots.at(stored, k), v) for k, v in denoising.settings(False, {}).items())


def test_agrees_and_at() -> None:
    stored = {"a": {"b": [1, {"c": 2.0, "d": None}]}, "n": 16, "flag": True}
    assert shots.agrees(shots.at(stored, "a.b.1.c"), 2)
    assert shots.agrees(shots.at(stored, "a.b"), [1, {"c": 2}])  # a mapping may hold more keys than asked
    assert not shots.agrees(shots.at(stored, "a.b"), [1])  # a list must agree in length
    assert not shots.agrees(shots.at(stored, "a.b.1.c"), 3)
    assert not shots.agrees(shots.at(stored, "a.b.5"), None)  # missing is not None
    assert not shots.agrees(shots.at(stored, "a.x"), None)
    assert shots.agrees(shots.at(stored, "a.b.1.d"), None)
    assert not shots.agrees(shots.at(stored, "flag"), 1)  # True is not the number 1
    assert not shots.agrees(shots.at(stored, "n"), "16")
