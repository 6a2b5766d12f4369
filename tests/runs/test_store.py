"""Tests of the results store (interp.runs): round trips, listing, errors, atomicity, and a real SIGKILL."""

from __future__ import annotations

import json
import math
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from interp.errors import InterpError
from interp.runs.errors import ManifestFieldError
from interp.runs import (
    ArtifactNotFoundError,
    ConfigMismatchError,
    CorruptRunError,
    InvalidNameError,
    NotSerializableError,
    Progress,
    Run,
    RunExistsError,
    RunInfo,
    RunNotFoundError,
    RunStore,
    default_runs_root,
)
from tests.runs import kill_helper as helper

HELPER = Path(helper.__file__)  # also run as a script, in its own process

CONFIG = {"layers": [0, 1, 2], "positions": (-1,), "lr": 1e-3, "method": "atp", "nested": {"k": 3, "flag": True}}


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


def hidden_files(path: Path) -> list[Path]:
    """Temporary files and staging directories: none may be left behind."""
    return list(path.rglob(".*"))


# --------------------------------------------------------------------- store basics


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INTERP_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert default_runs_root() == tmp_path / "elsewhere"
    assert RunStore().root == tmp_path / "elsewhere"
    monkeypatch.delenv("INTERP_RUNS_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_runs_root() == tmp_path / "data" / "runs"


def test_create_writes_manifest(store: RunStore) -> None:
    run = store.create("patching", CONFIG, model={"name": "tiny-gpt2", "dtype": "float32"}, dataset="ioi")
    assert re.fullmatch(r"patching-\d{8}-\d{6}-[0-9a-f]{6}", run.id)
    assert run.path == store.root / run.id and (run.path / "manifest.json").is_file()
    m = run.manifest
    assert (m["id"], m["kind"], m["status"]) == (run.id, "patching", "running")
    assert (run.kind, run.status) == ("patching", "running")
    assert m["config"] == {**CONFIG, "positions": [-1]}  # stored as JSON: the tuple is a list
    assert m["model"] == {"name": "tiny-gpt2", "dtype": "float32"} and m["dataset"] == "ioi"
    assert set(m["versions"]) == {"interp", "torch", "transformers", "python", "platform"}
    assert datetime.fromisoformat(m["created"]).utcoffset().total_seconds() == 0
    assert m["finished"] is None and m["error"] is None and m["summary"] == {}
    assert store.get(run.id).manifest == m
    assert Run(run.path).status == "running"  # a run opens from its path alone
    assert hidden_files(store.root) == []  # staging directory renamed away


def test_create_refusals(store: RunStore) -> None:
    store.create("patching", {}, model="m", run_id="fixed-id")
    with pytest.raises(RunExistsError, match="already exists"):
        store.create("patching", {}, model="m", run_id="fixed-id")
    with pytest.raises(NotSerializableError, match=r"config\['layers'\]\[1\] is a numpy.int64"):
        store.create("patching", {"layers": [0, np.int64(1)]}, model="m")
    with pytest.raises(NotSerializableError, match="Path"):
        store.create("patching", {"out": Path("x")}, model="m")
    with pytest.raises(NotSerializableError, match="keys must be strings"):
        store.create("patching", {"by_layer": {3: "x"}}, model="m")
    with pytest.raises(NotSerializableError, match="model"):
        store.create("patching", {}, model={"weights": torch.zeros(2)})
    for bad in ["../escape", "a/b", ".hidden", "", "a b"]:
        with pytest.raises(InvalidNameError):
            store.create("patching", {}, model="m", run_id=bad)
        with pytest.raises(InvalidNameError):
            store.create(bad, {}, model="m")
    assert [info.id for info in store.list()] == ["fixed-id"]
    assert not (store.root.parent / "escape").exists()


# --------------------------------------------------------------------- round trips


def test_table_round_trip(store: RunStore) -> None:
    run = store.create("patching", CONFIG, model="m")
    frame = pd.DataFrame(
        {
            "layer": np.arange(5, dtype=np.int64),
            "effect": [0.1, -2.5, float("nan"), 1e-30, 3.0],
            "f32": np.linspace(0, 1, 5, dtype=np.float32),
            "site": ["blocks.0.hook_z", "a", "b", "c", "d"],
            "ok": [True, False, True, True, False],
            "cat": pd.Categorical(["x", "y", "x", "y", "x"]),
        },
        index=pd.Index(list("abcde"), name="key"),
    )
    run.write_table("results", frame)
    pd.testing.assert_frame_equal(run.read_table("results"), frame)
    run.write_table("results", frame.iloc[:2])  # replace
    pd.testing.assert_frame_equal(run.read_table("results"), frame.iloc[:2])
    assert run.tables() == ["results"]
    with pytest.raises(ArtifactNotFoundError, match=r"did you mean \['results'\]"):
        run.read_table("result")
    with pytest.raises(NotSerializableError):
        run.write_table("bad", pd.DataFrame({0: [1]}))  # non-string column name
    with pytest.raises(NotSerializableError, match="one type"):
        run.write_table("bad", pd.DataFrame({"mixed": [1, "a", torch.zeros(1)]}))
    with pytest.raises(NotSerializableError):
        run.write_table("bad", [1, 2])  # type: ignore[arg-type]
    assert run.tables() == ["results"] and hidden_files(run.path) == []


def test_tensor_round_trip_is_exact(store: RunStore) -> None:
    run = store.create("sae", {}, model="m")
    base = torch.randn(4, 6, dtype=torch.float64)
    tensors = {
        "f32": torch.randn(3, 5, 7),
        "f64": base,
        "view_of_f64": base[1:3, ::2],  # a strided view sharing storage with f64
        "same_again": base,
        "bf16": torch.randn(8, dtype=torch.bfloat16),
        "f16": torch.randn(2, 2, dtype=torch.float16),
        "i64": torch.arange(-5, 5),
        "bool": torch.rand(9) > 0.5,
        "special": torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0]),
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(2.5),
        "grad": torch.ones(2, requires_grad=True) * 3,
    }
    run.write_tensors("acts", tensors, metadata={"site": "blocks.0.hook_resid_post"})
    back = run.read_tensors("acts")
    assert back.keys() == tensors.keys()
    for key, tensor in tensors.items():
        got = back[key]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape and got.device.type == "cpu", key
        bits = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
        assert torch.equal(got.reshape(-1).view(torch.uint8), bits), key  # bit for bit, NaN and -0.0 included
    assert run.read_tensor_metadata("acts") == {"site": "blocks.0.hook_resid_post"}
    assert run.tensor_files() == ["acts"]
    with pytest.raises(NotSerializableError, match="not a torch.Tensor"):
        run.write_tensors("bad", {"x": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(NotSerializableError, match="str -> str"):
        run.write_tensors("bad", {"x": torch.zeros(1)}, metadata={"n": 3})  # type: ignore[dict-item]
    with pytest.raises(ArtifactNotFoundError, match="acts"):
        run.read_tensors("act")


def test_json_round_trip(store: RunStore) -> None:
    run = store.create("steering", {}, model="m")
    value = {"alpha": [0.5, 1.0], "label": "ünïcode", "none": None, "nan": float("nan"), "deep": {"a": [{"b": 1}]}}
    run.write_json("plan", value)
    back = run.read_json("plan")
    assert math.isnan(back.pop("nan")) and back == {k: v for k, v in value.items() if k != "nan"}
    assert run.json_files() == ["plan"]
    with pytest.raises(NotSerializableError, match=r"plan2\['deep'\]\['x'\]"):
        run.write_json("plan2", {"deep": {"x": {1, 2}}})
    with pytest.raises(InvalidNameError, match="reserved"):
        run.write_json("manifest", {})
    with pytest.raises(ArtifactNotFoundError):
        run.read_json("nothing")


@pytest.mark.parametrize("bad", ["../x", "../../etc/passwd", "a/b", ".hidden", "", "x.y", "a b", "-x", "a" * 129])
def test_artifact_names_are_checked(store: RunStore, bad: str) -> None:
    run = store.create("patching", {}, model="m")
    with pytest.raises(InvalidNameError):
        run.write_table(bad, pd.DataFrame({"a": [1]}))
    with pytest.raises(InvalidNameError):
        run.write_tensors(bad, {"a": torch.zeros(1)})
    with pytest.raises(InvalidNameError):
        run.write_json(bad, 1)
    with pytest.raises(InvalidNameError):
        run.write_shard(bad, 0, frame=pd.DataFrame({"a": [1]}))
    assert sorted(p.name for p in store.root.parent.rglob("*") if p.is_file()) == ["manifest.json", "writer.lock"]


def test_shards(store: RunStore) -> None:
    run = store.create("patching", {}, model="m")
    assert run.finished_shards("cells") == [] and run.read_shards("cells") == [] and run.shard_groups() == []
    for i in [2, 0, 1, 10]:
        run.write_shard("cells", i, tensors={"x": torch.full((2,), float(i))}, frame=pd.DataFrame({"i": [i]}))
    run.write_shard("only_rows", 0, frame=pd.DataFrame({"a": [1.0]}))
    run.write_shard("marker_only", 3)
    assert run.finished_shards("cells") == [0, 1, 2, 10]
    assert run.shard_groups() == ["cells", "marker_only", "only_rows"]
    shards = run.read_shards("cells")
    assert [i for i, _, _ in shards] == [0, 1, 2, 10]
    for i, tensors, frame in shards:
        assert torch.equal(tensors["x"], torch.full((2,), float(i)))
        pd.testing.assert_frame_equal(frame, pd.DataFrame({"i": [i]}))
    [(_, tensors, frame)] = run.read_shards("only_rows")
    assert tensors == {} and frame is not None
    assert run.read_shards("marker_only") == [(3, {}, None)]
    run.write_shard("cells", 1, tensors={"y": torch.zeros(1)})  # rewrite without a table: old table not read back
    tensors, frame = run.read_shard("cells", 1)
    assert list(tensors) == ["y"] and frame is None
    with pytest.raises(ArtifactNotFoundError, match="not finished"):
        run.read_shard("cells", 5)
    for bad in [-1, 1.0, True]:
        with pytest.raises(ValueError):
            run.write_shard("cells", bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------- listing


def test_list_filter_sort_and_frame(store: RunStore) -> None:
    assert store.list() == [] and list(store.to_frame().columns)[:3] == ["id", "kind", "status"]
    a = store.create("patching", {"i": 0}, model={"name": "gpt2-tiny", "rev": "x"}, dataset={"name": "ioi", "n": 8})
    b = store.create("steering", {"i": 1}, model="llama-tiny")
    c = store.create("patching", {"i": 2}, model="qwen-tiny", run_id="my-run")
    a.finish({"logit_diff": 1.5, "by_layer": {"l0": 0.1, "l1": 0.2}})
    b.fail("out of memory")
    infos = store.list()
    assert [i.id for i in infos] == [c.id, b.id, a.id]  # newest first
    assert all(isinstance(i, RunInfo) for i in infos)
    assert [i.id for i in store.list(kind="patching")] == [c.id, a.id]
    assert store.list(kind="nothing") == []
    info = store.list(kind="steering")[0]
    assert (info.status, info.error, info.model, info.dataset) == ("failed", "out of memory", "llama-tiny", None)
    assert info.path == b.path
    assert info.finished is not None
    with pytest.raises(AttributeError):
        info.status = "x"  # type: ignore[misc]
    frame = store.to_frame()
    assert list(frame["id"]) == [c.id, b.id, a.id]
    assert list(frame["status"]) == ["running", "failed", "finished"]
    assert list(frame["model"]) == ["qwen-tiny", "llama-tiny", "gpt2-tiny"]
    assert frame.loc[frame["id"] == a.id, "dataset"].item() == "ioi"
    assert frame.loc[frame["id"] == a.id, "summary.logit_diff"].item() == 1.5
    assert frame.loc[frame["id"] == a.id, "summary.by_layer.l1"].item() == 0.2
    assert isinstance(frame["created"].dtype, pd.DatetimeTZDtype) and str(frame["created"].dtype.tz) == "UTC"
    assert frame.loc[frame["id"] == c.id, "finished"].isna().item()
    assert len(store.to_frame(kind="steering")) == 1


def test_corrupt_runs_are_listed_not_raised(store: RunStore) -> None:
    good = store.create("patching", {}, model="m")
    bad_json = store.create("patching", {}, model="m")
    (bad_json.path / "manifest.json").write_text("{ not json")
    (store.root / "no-manifest").mkdir()
    as_list = store.create("sae", {}, model="m", run_id="as-list")
    (as_list.path / "manifest.json").write_text("[1, 2]")
    bad_status = store.create("sae", {}, model="m", run_id="bad-status")
    manifest = json.loads((bad_status.path / "manifest.json").read_text())
    (bad_status.path / "manifest.json").write_text(json.dumps({**manifest, "status": "weird"}))
    (store.root / "stray-file.txt").write_text("not a run")
    infos = {i.id: i for i in store.list()}
    assert set(infos) == {good.id, bad_json.id, "no-manifest", "as-list", "bad-status"}
    assert infos[good.id].status == "running" and infos[good.id].error is None
    for run_id in [bad_json.id, "no-manifest", "as-list", "bad-status"]:
        assert infos[run_id].status == "corrupt" and infos[run_id].error, run_id
    assert "JSONDecodeError" in infos[bad_json.id].error and "no manifest.json" in infos["no-manifest"].error
    assert "weird" in infos["bad-status"].error
    assert infos[bad_json.id].kind == "patching"  # recovered from the store-made id
    assert {i.id for i in store.list(kind="patching")} == {good.id, bad_json.id}
    assert set(store.to_frame()["status"]) == {"running", "corrupt"}
    with pytest.raises(CorruptRunError, match="JSONDecodeError"):
        store.get(bad_json.id)
    store.delete(bad_json.id)
    assert bad_json.id not in store


def test_missing_run_names_close_ids(store: RunStore) -> None:
    run = store.create("patching", {}, model="m", run_id="ioi-patching-gpt2")
    store.create("patching", {}, model="m", run_id="sae-train-llama")
    with pytest.raises(RunNotFoundError) as e:
        store.get("ioi-patchng-gpt2")
    assert "ioi-patching-gpt2" in str(e.value) and "sae-train-llama" not in str(e.value)
    assert isinstance(e.value, InterpError) and isinstance(e.value, KeyError)
    assert str(e.value).startswith("no run 'ioi-patchng-gpt2'")  # not quoted like a bare KeyError
    with pytest.raises(RunNotFoundError, match="ioi-patching-gpt2"):
        store.get("ioi")  # a prefix finds its run
    assert store.get(run.id).id == run.id
    assert "ioi-patching-gpt2" in store and "nope" not in store and "../x" not in store
    with pytest.raises(RunNotFoundError):
        RunStore(store.root / "does-not-exist").get("x")
    with pytest.raises(InvalidNameError):
        store.get("../runs")


def test_delete(store: RunStore) -> None:
    keep = store.create("patching", {}, model="m")
    gone = store.create("patching", {}, model="m")
    gone.write_shard("cells", 0, tensors={"x": torch.zeros(3)})
    store.delete(gone.id)
    assert [i.id for i in store.list()] == [keep.id] and not gone.path.exists()
    assert hidden_files(store.root) == []
    with pytest.raises(RunNotFoundError):
        store.get(gone.id)
    with pytest.raises(RunNotFoundError):
        store.delete(gone.id)
    with pytest.raises(FileNotFoundError):  # a deleted run is not silently re-created by a late write
        gone.write_table("late", pd.DataFrame({"a": [1]}))
    with pytest.raises(FileNotFoundError):
        gone.write_shard("cells", 1, tensors={"x": torch.zeros(3)})
    assert not gone.path.exists()


# --------------------------------------------------------------------- lifecycle


def test_finish_fail_update(store: RunStore) -> None:
    run = store.create("patching", CONFIG, model="m")
    run.update_manifest(summary={"progress": 0.5}, progress={"done": 5, "total": 10})
    assert run.manifest["progress"] == {"done": 5, "total": 10}
    run.finish({"logit_diff": 2.0})
    m = run.manifest
    assert m["status"] == "finished" and m["summary"] == {"progress": 0.5, "logit_diff": 2.0}
    assert datetime.fromisoformat(m["finished"]) >= datetime.fromisoformat(m["created"])
    with pytest.raises(ValueError, match="cannot be changed"):
        run.update_manifest(id="other")
    with pytest.raises(ValueError, match="status"):
        run.update_manifest(status="done")
    with pytest.raises(NotSerializableError):
        run.update_manifest(summary={"x": np.float32(1.0)})
    assert run.manifest == m  # refused updates change nothing
    try:
        raise RuntimeError("boom")
    except RuntimeError as e:
        run.fail(e)
    manifest = run.manifest
    assert run.status == "failed" and manifest["error"] == "RuntimeError: boom"
    assert "Traceback" in manifest["traceback"] and "boom" in manifest["traceback"]


def test_progress_is_recorded_listed_and_never_breaks_a_listing(store: RunStore) -> None:
    run = store.create("attribution", CONFIG, model="m")
    assert run.progress is None and store.list()[0].progress is None
    run.set_progress(0, 6, "stages")
    run.set_progress(2, 6, "stages", stage="exact head_z")
    assert run.manifest["progress"] == {"done": 2, "total": 6, "unit": "stages", "stage": "exact head_z"}
    expected = Progress(done=2, total=6, unit="stages", stage="exact head_z")
    assert run.progress == expected and store.list()[0].progress == expected
    assert expected.describe() == "2 of 6 stages (last: exact head_z)" and expected.short() == "2/6 stages"
    assert expected.fraction == pytest.approx(1 / 3) and Progress(0, 0, "cells").fraction == 0.0
    run.set_progress(100, 400, "training steps", tokens_per_epoch=1234)
    assert run.manifest["progress"]["tokens_per_epoch"] == 1234 and run.progress == Progress(100, 400, "training steps")
    before = run.manifest
    for done, total, unit in ((3, 2, "stages"), (-1, 2, "stages"), (1.5, 2, "stages"), (True, 2, "stages"), (1, 2, "")):
        with pytest.raises(ManifestFieldError, match="progress"):
            run.set_progress(done, total, unit)  # type: ignore[arg-type]
    assert run.manifest == before  # a refused progress changes nothing
    for odd in ("half", {"done": "1", "total": 2, "unit": "stages"}, {"done": 1, "total": 2}, [1, 2]):
        run.update_manifest(progress=odd)  # written by something else: shown as no progress, never "corrupt"
        (info,) = store.list()
        assert info.status == "running" and info.progress is None and run.progress is None


def test_context_manager(store: RunStore) -> None:
    with store.create("patching", {}, model="m") as run:
        run.write_json("x", 1)
    assert run.status == "finished"
    with pytest.raises(KeyError):
        with store.create("patching", {}, model="m") as failing:
            raise KeyError("missing site")
    assert failing.status == "failed" and "missing site" in failing.manifest["error"]


def test_resume(store: RunStore) -> None:
    run = store.create("patching", CONFIG, model="m")
    run.fail("killed")
    changed = {**CONFIG, "lr": 1e-2, "nested": {"k": 3, "flag": 1}, "extra": "new"}
    del changed["method"]
    with pytest.raises(ConfigMismatchError) as e:
        store.resume(run.id, changed)
    message = str(e.value)
    for text in [
        "lr: run has 0.001, given 0.01",
        "nested.flag: run has True, given 1",
        "extra: run has <absent>, given 'new'",
        "method: run has 'atp', given <absent>",
    ]:
        assert text in message, message
    assert "layers" not in message and "positions" not in message
    assert run.status == "failed"  # refused resume changes nothing
    with pytest.raises(NotSerializableError):
        store.resume(run.id, {**CONFIG, "lr": np.float16(1)})
    resumed = store.resume(run.id, {**CONFIG, "positions": [-1]})  # tuple or list: same stored config
    m = resumed.manifest
    assert (m["status"], m["finished"], m["error"], len(m["resumed"])) == ("running", None, None, 1)
    with pytest.raises(RunNotFoundError):
        store.resume("nope", CONFIG)


# --------------------------------------------------------------------- atomicity


def test_crash_during_rename_leaves_old_files(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = store.create("patching", {}, model="m")
    old = pd.DataFrame({"a": [1, 2, 3]})
    run.write_table("results", old)
    run.write_tensors("acts", {"x": torch.ones(3)})
    run.write_shard("cells", 0, tensors={"x": torch.zeros(2)}, frame=old)
    manifest_before = (run.path / "manifest.json").read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        run.write_table("results", pd.DataFrame({"a": [9]}))
    with pytest.raises(OSError, match="simulated"):
        run.write_table("new_table", pd.DataFrame({"a": [9]}))
    with pytest.raises(OSError, match="simulated"):
        run.write_tensors("acts", {"x": torch.zeros(3)})
    with pytest.raises(OSError, match="simulated"):
        run.write_shard("cells", 1, tensors={"x": torch.ones(2)})
    with pytest.raises(OSError, match="simulated"):
        run.finish({"x": 1})
    monkeypatch.undo()
    pd.testing.assert_frame_equal(run.read_table("results"), old)
    assert run.tables() == ["results"] and torch.equal(run.read_tensors("acts")["x"], torch.ones(3))
    assert run.finished_shards("cells") == [0]
    assert (run.path / "manifest.json").read_bytes() == manifest_before
    assert hidden_files(run.path) == []  # no temporary file left visible


def test_crash_mid_shard_never_counts(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from interp.runs import shards

    run = store.create("patching", {}, model="m")
    run.write_shard("cells", 0, tensors={"x": torch.zeros(2)}, frame=pd.DataFrame({"a": [0]}))
    run.write_shard("cells", 1, tensors={"x": torch.ones(2)}, frame=pd.DataFrame({"a": [1]}))

    def half_written_table(path: Path, frame: pd.DataFrame) -> None:  # tensors are on disk, then the process dies
        path.write_bytes(b"PAR1 truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(shards, "write_table", half_written_table)
    with pytest.raises(KeyboardInterrupt):
        run.write_shard("cells", 2, tensors={"x": torch.full((2,), 2.0)}, frame=pd.DataFrame({"a": [2]}))
    assert run.finished_shards("cells") == [0, 1]
    with pytest.raises(KeyboardInterrupt):  # a crash while rewriting a finished shard un-finishes it
        run.write_shard("cells", 1, tensors={"x": torch.full((2,), 7.0)}, frame=pd.DataFrame({"a": [7]}))
    assert run.finished_shards("cells") == [0]
    assert [i for i, _, _ in run.read_shards("cells")] == [0]
    monkeypatch.undo()
    run.write_shard("cells", 1, tensors={"x": torch.ones(2)}, frame=pd.DataFrame({"a": [1]}))
    run.write_shard("cells", 2, tensors={"x": torch.full((2,), 2.0)}, frame=pd.DataFrame({"a": [2]}))
    assert [float(t["x"][0]) for _, t, _ in run.read_shards("cells")] == [0.0, 1.0, 2.0]
    assert [int(f["a"][0]) for _, _, f in run.read_shards("cells")] == [0, 1, 2]


def test_resume_removes_temporaries_of_a_killed_writer(store: RunStore) -> None:
    run = store.create("patching", {}, model="m")
    run.write_shard("cells", 0, tensors={"x": torch.zeros(2)})
    stale = run.path / "shards" / "cells" / ".000001.safetensors.123-abcd.tmp"
    stale.write_bytes(b"half")
    assert run.finished_shards("cells") == [0] and run.tensor_files() == []
    store.resume(run.id, {})
    assert not stale.exists()


def test_readers_do_not_interfere(store: RunStore) -> None:
    writer = store.create("patching", {}, model="m")
    writer.write_shard("cells", 0, tensors={"x": torch.zeros(2)})
    snapshot = {p: p.stat().st_mtime_ns for p in store.root.rglob("*")}
    reader_store = RunStore(store.root)
    reader = reader_store.get(writer.id)
    assert reader.status == "running" and reader.finished_shards("cells") == [0]
    reader_store.list(), reader_store.to_frame(), reader.read_shards("cells")
    assert {p: p.stat().st_mtime_ns for p in store.root.rglob("*")} == snapshot  # reading wrote nothing
    writer.write_shard("cells", 1, tensors={"x": torch.ones(2)})
    assert reader.finished_shards("cells") == [0, 1]  # nothing cached: the reader sees progress


# --------------------------------------------------------------------- a real SIGKILL


def concatenated(run: Run) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    shards = run.read_shards(helper.GROUP)
    tensors = {key: torch.cat([t[key] for _, t, _ in shards]) for key in shards[0][1]}
    frame = pd.concat([f for _, _, f in shards], ignore_index=True)
    return tensors, frame


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_sweep_then_resume_matches_uninterrupted(store: RunStore) -> None:
    n, kill_after = 12, 4
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(store.root), "killed", str(n), "0.15"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[int] = []
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while len(seen) < kill_after:
            assert selector.select(timeout=max(0.0, deadline - time.monotonic())), "helper produced no output"
            line = proc.stdout.readline()
            assert line, f"helper exited early: {proc.stderr.read()}"
            if line.strip() != "started":
                seen.append(int(line))
                # a reader in this process follows the sweep while it runs
                assert set(seen) <= set(RunStore(store.root).get("killed").finished_shards(helper.GROUP))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert seen == list(range(kill_after))

    killed = store.get("killed")
    done = killed.finished_shards(helper.GROUP)
    assert killed.status == "running"  # nobody got to mark it otherwise
    assert done == list(range(len(done))) and kill_after <= len(done) < n

    with pytest.raises(ConfigMismatchError, match="n_shards"):
        store.resume("killed", helper.config(n + 1))
    run = store.resume("killed", helper.config(n))
    helper.sweep(run, n, sleep=0.0)
    run.finish({"shards": n})
    assert run.finished_shards(helper.GROUP) == list(range(n)) and run.status == "finished"

    reference = store.create("killtest", helper.config(n), model="none", run_id="uninterrupted")
    helper.sweep(reference, n, sleep=0.0)
    reference.finish({"shards": n})

    got_tensors, got_frame = concatenated(run)
    want_tensors, want_frame = concatenated(reference)
    assert got_tensors.keys() == want_tensors.keys() == {"effect", "effect64", "top", "half"}
    for key in want_tensors:
        assert got_tensors[key].dtype == want_tensors[key].dtype and torch.equal(got_tensors[key], want_tensors[key])
    pd.testing.assert_frame_equal(got_frame, want_frame)
    assert list(got_frame["shard"].unique()) == list(range(n))
    assert hidden_files(run.path) == []
