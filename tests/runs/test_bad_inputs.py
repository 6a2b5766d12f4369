"""The results store's bad inputs and faults, each with the error or notice it must give (table-driven).

Damaged shards, manifests with wrong field types, bad names, missing runs and stores, a full disk, a
read-only store, file modes, and two processes writing one run.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import interp.runs.formats as formats
from interp.cli import app
from interp.errors import InterpError
from interp.runs import (
    CORRUPT,
    LATEST,
    CorruptRunError,
    DamagedShardError,
    DamagedShardWarning,
    InvalidNameError,
    RunNotFoundError,
    RunStore,
    UnreadableRunWarning,
    open_run,
)
from interp.runs.names import check_name, check_run_id

HELPER = Path(__file__).with_name("kill_helper.py")
_spec = importlib.util.spec_from_file_location("kill_helper", HELPER)
helper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helper)

N = 4

PATCH_CONFIG = """
model: tiny-llama
dtype: float64
task: {kind: ioi, n: 4, seed: 0}
sweeps: [{sweep: resid_pre}]
shard_cells: 2
"""


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


def swept(store: RunStore, run_id: str = "sweep") -> Path:
    """A run with N finished shards of the helper's sweep; returns shard 1's stem."""
    run = store.create("killtest", helper.config(N), model="none", run_id=run_id)
    helper.sweep(run, N, 0.0)
    return run.path / "shards" / helper.GROUP / "000001"


def _rewrite_tensor(stem: Path, value: float) -> None:
    tensors, _ = helper.make_shard(1)
    tensors["effect"][3, 5] = value
    formats.write_tensors(stem.with_suffix(".safetensors"), tensors)


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


# ------------------------------------------------------------------ damaged shards (items 1 and 2)

DAMAGE: list[tuple[str, Callable[[Path], None], str]] = [
    ("nan in values", lambda stem: _rewrite_tensor(stem, float("nan")), "NaN or infinite"),
    ("inf in values", lambda stem: _rewrite_tensor(stem, float("inf")), "NaN or infinite"),
    ("truncated safetensors", lambda stem: _truncate(stem.with_suffix(".safetensors")), "tensors 000001.safetensors are unreadable"),
    ("missing tensor file", lambda stem: stem.with_suffix(".safetensors").unlink(), "tensors 000001.safetensors are unreadable"),
    ("truncated parquet", lambda stem: _truncate(stem.with_suffix(".parquet")), "table 000001.parquet is unreadable"),
    ("empty marker", lambda stem: stem.with_suffix(".done").write_bytes(b""), "marker 000001.done is unreadable"),
    ("garbage marker", lambda stem: stem.with_suffix(".done").write_bytes(b"\x00\xffgarbage"), "marker 000001.done is unreadable"),
    ("marker of wrong shape", lambda stem: stem.with_suffix(".done").write_text("[1, 2]"), "not a shard marker"),
    ("marker with wrong types", lambda stem: stem.with_suffix(".done").write_text('{"tensors": "yes", "table": 1}'), "not a shard marker"),
]


@pytest.mark.parametrize(("damage", "reason"), [(d, r) for _, d, r in DAMAGE], ids=[c for c, _, _ in DAMAGE])
def test_damaged_shard_counts_unfinished_and_is_recomputed(store: RunStore, damage: Callable[[Path], None], reason: str) -> None:
    stem = swept(store)
    damage(stem)
    run = store.get("sweep")
    with pytest.warns(DamagedShardWarning, match=reason):
        assert run.finished_shards(helper.GROUP) == [0, 2, 3]
    with pytest.raises(DamagedShardError, match=f"shard 1 .*{reason}.*resume the run"):  # never NaN, never a raw decoder error
        run.read_shards(helper.GROUP)
    resumed = store.resume("sweep", helper.config(N))
    with pytest.warns(DamagedShardWarning):
        helper.sweep(resumed, N, 0.0)  # recomputes shard 1 only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shards = resumed.read_shards(helper.GROUP)
    assert [i for i, _, _ in shards] == list(range(N))
    for index, tensors, frame in shards:
        want, want_frame = helper.make_shard(index)
        assert all(torch.equal(tensors[k], want[k]) for k in want)
        pd.testing.assert_frame_equal(frame, want_frame)


def test_patching_summary_ranks_a_nan_cell_last() -> None:
    from interp.patching.runner import summarise

    class Fake:
        axes = ("layer",)
        cost = type("C", (), {"as_dict": lambda self: {}})()
        clean = corrupt = torch.zeros(2)

        def mean(self) -> torch.Tensor:
            return torch.tensor([0.1, float("nan"), -0.7, 0.3])

        def summary_frame(self) -> pd.DataFrame:
            return pd.DataFrame({"layer": [0, 1, 2, 3]})

    top = summarise(Fake(), top=4)["top_cells"]
    assert [cell["layer"] for cell in top] == [2, 3, 0, 1]


@pytest.mark.parametrize("damage", ["nan", "truncated", "empty marker"])
def test_patch_resume_recomputes_a_damaged_shard(tmp_path: Path, damage: str) -> None:
    from interp.patching.persist import load_result

    config = tmp_path / "patch.yaml"
    config.write_text(PATCH_CONFIG)
    assert invoke("patch", config, "--runs", tmp_path / "runs").exit_code == 0
    [info] = RunStore(tmp_path / "runs").list()
    run = RunStore(tmp_path / "runs").get(info.id)
    whole = load_result(run, "sweep0_resid_pre")
    stem = run.path / "shards" / "sweep0_resid_pre" / "000001"
    if damage == "nan":
        tensors = formats.read_tensors(stem.with_suffix(".safetensors"))
        tensors["values"][0, 0] = float("nan")
        formats.write_tensors(stem.with_suffix(".safetensors"), tensors)
    elif damage == "truncated":
        _truncate(stem.with_suffix(".safetensors"))
    else:
        stem.with_suffix(".done").write_bytes(b"")
    with pytest.warns(DamagedShardWarning, match="shard 1 "):
        result = invoke("patch", config, "--runs", tmp_path / "runs", "--resume", info.id)
    assert result.exit_code == 0, result.output
    resumed = load_result(run, "sweep0_resid_pre")
    assert torch.isfinite(resumed.values).all() and torch.equal(resumed.values, whole.values)
    assert run.status == "finished"


# ------------------------------------------------------------------ manifests with wrong types (item 2)

BAD_FIELDS = [
    ("model", 42), ("status", 7), ("created", None), ("created", "yesterday"), ("kind", ["x"]), ("config", [1]),
    ("summary", [1]), ("finished", 5), ("error", 3), ("dataset", 1.5), ("format", True), ("versions", "1"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS, ids=[f"{f}={v!r}" for f, v in BAD_FIELDS])
def test_manifest_field_of_wrong_type_is_listed_corrupt(store: RunStore, field: str, value: object) -> None:
    good = store.create("patching", {"a": 1}, model="m")
    bad = store.create("patching", {"a": 1}, model="m")
    manifest = json.loads((bad.path / "manifest.json").read_text())
    manifest[field] = value
    (bad.path / "manifest.json").write_text(json.dumps(manifest))
    infos = {info.id: info for info in store.list()}
    assert infos[bad.id].status == CORRUPT and field in infos[bad.id].error
    assert infos[good.id].status == "running"
    frame = store.to_frame()  # must not raise either
    assert set(frame["status"]) == {CORRUPT, "running"}
    with pytest.raises(CorruptRunError, match=field):
        store.get(bad.id)
    # resuming the newest matching run skips the broken one and says so
    with pytest.warns(UnreadableRunWarning, match=bad.id):
        assert open_run(store, "patching", {"a": 1}, model="m", resume=LATEST).id == good.id


@pytest.mark.parametrize("breakage", ["garbage", "missing"])
def test_unreadable_runs_do_not_block_resume_latest(store: RunStore, breakage: str) -> None:
    wanted = store.create("patching", {"a": 1}, model="m")
    broken = store.create("patching", {"a": 1}, model="m")
    if breakage == "garbage":
        (broken.path / "manifest.json").write_bytes(b"{not json")
    else:
        (broken.path / "manifest.json").unlink()
    with pytest.warns(UnreadableRunWarning, match=broken.id):
        assert open_run(store, "patching", {"a": 1}, model="m", resume=LATEST).id == wanted.id
    with pytest.warns(UnreadableRunWarning), pytest.raises(RunNotFoundError, match=f"skipped 1 unreadable run.*{broken.id}"):
        open_run(store, "patching", {"a": 2}, model="m", resume=LATEST)


# ------------------------------------------------------------------ names (item 5)

BAD_NAMES = ["a\n", "a\nb", "a ", " a", "a b", "a/b", "a\\b", "../x", "", ".hidden", "-a", "a\t"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_names_are_refused(store: RunStore, name: str) -> None:
    with pytest.raises(InvalidNameError, match="not allowed"):
        check_name(name, "table")
    with pytest.raises(InvalidNameError, match="not allowed"):
        check_run_id(name)
    with pytest.raises(InvalidNameError):
        store.create("patching", {}, model="m", run_id=name)
    with pytest.raises(InvalidNameError):
        store.create(name, {}, model="m")
    assert store.list() == []
