"""The results store's bad inputs and faults, each with the error or notice it must give (table-driven).

Damaged shards, manifests with wrong field types, bad names, missing runs and stores, a full disk, a
read-only store, file modes, and two processes writing one run.
"""

from __future__ import annotations

import errno
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

from interp.cli import app
from interp.errors import InterpError
from interp.runs import (
    CORRUPT,
    FAILED,
    LATEST,
    CorruptRunError,
    DamagedShardError,
    DamagedShardWarning,
    InvalidNameError,
    RunNotFoundError,
    RunStore,
    StoreWriteError,
    UnreadableRunWarning,
    formats,
    open_run,
)
from interp.runs.names import check_name, check_run_id
from tests.runs import kill_helper as helper

HELPER = Path(helper.__file__)  # also run as a script, in its own process

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


# ------------------------------------------------------------------ missing runs and stores (item 6)

MISSING: list[tuple[str, Callable[[RunStore], object], type[Exception], str]] = [
    ("resume latest, empty store", lambda s: open_run(s, "patching", {}, model="m", resume=LATEST), RunNotFoundError, "no unfinished patching run"),
    ("resume unknown id", lambda s: open_run(s, "patching", {}, model="m", resume="nope"), RunNotFoundError, "no run 'nope'"),
    ("resume latest, no store", lambda s: open_run(RunStore(s.root / "typo"), "patching", {}, model="m", resume=LATEST), RunNotFoundError, "does not exist"),
    ("get, no store", lambda s: RunStore(s.root / "typo").get("x"), RunNotFoundError, "does not exist"),
    ("check a missing store", lambda s: RunStore(s.root / "typo").check_root(), FileNotFoundError, "does not exist"),
]


@pytest.mark.parametrize(("action", "error", "message"), [m[1:] for m in MISSING], ids=[m[0] for m in MISSING])
def test_missing_runs_and_stores(store: RunStore, action: Callable[[RunStore], object], error: type[Exception], message: str) -> None:
    store.create("patching", {"other": 1}, model="m").finish()
    with pytest.raises(error, match=message) as raised:
        action(store)
    assert isinstance(raised.value, InterpError)


def test_cli_runs_on_a_store_that_does_not_exist(tmp_path: Path) -> None:
    result = invoke("runs", "--runs", tmp_path / "typo")
    assert result.exit_code == 2 and "does not exist" in result.output and "typo" in result.output
    (tmp_path / "file").write_text("x")
    result = invoke("runs", "--runs", tmp_path / "file")
    assert result.exit_code == 2 and "is a file" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ full disk, read-only store, modes (item 4)


def _raise(code: int) -> Callable[..., None]:
    def write(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return write


FAULTS: list[tuple[str, Callable[[pytest.MonkeyPatch, RunStore], Callable[[], object]], str]] = [
    ("disk full writing tensors", lambda mp, s: (mp.setattr(formats, "save_file", _raise(errno.ENOSPC)),
                                                 lambda: s.create("k", {}, model="m").write_tensors("t", {"x": torch.zeros(1)}))[1],
     "t.safetensors: No space left on device.*disk is full"),
    ("disk full writing a shard", lambda mp, s: (mp.setattr(formats, "save_file", _raise(errno.ENOSPC)),
                                                lambda: s.create("k", {}, model="m").write_shard("g", 0, tensors={"x": torch.zeros(1)}))[1],
     "000000.safetensors: No space left on device.*disk is full"),
    ("read-only store", lambda mp, s: (mp.setattr(Path, "mkdir", _raise(errno.EROFS)), lambda: s.create("k", {}, model="m"))[1],
     "cannot create runs in .*runs.*read-only"),
    ("store is a file", lambda mp, s: (s.root.parent.mkdir(exist_ok=True), s.root.write_text("x"), lambda: s.create("k", {}, model="m"))[2],
     "cannot create runs in .*runs.*not a directory.*point --runs at a directory"),
]


@pytest.mark.parametrize(("fault", "message"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_write_faults_name_the_path_and_the_fix(monkeypatch: pytest.MonkeyPatch, store: RunStore, fault, message: str) -> None:
    action = fault(monkeypatch, store)
    with pytest.raises(StoreWriteError, match=message) as raised:
        action()
    assert isinstance(raised.value, OSError) and isinstance(raised.value, InterpError)


def test_cli_patch_on_a_full_disk_records_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "patch.yaml"
    config.write_text(PATCH_CONFIG)
    monkeypatch.setattr(formats, "save_file", _raise(errno.ENOSPC))
    result = invoke("patch", config, "--runs", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.output and "disk is full" in result.output
    assert "Traceback" not in result.output
    [info] = RunStore(tmp_path / "runs").list()
    assert info.status == FAILED and "No space left on device" in info.error and "StoreWriteError" in info.error
    (tmp_path / "file").write_text("x")
    result = invoke("patch", config, "--runs", tmp_path / "file")
    assert result.exit_code == 2 and "is a file, not a runs store directory" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_every_file_of_a_run_has_the_same_mode(store: RunStore, umask: int) -> None:
    old = os.umask(umask)
    try:
        run = store.create("k", {}, model="m")
        run.write_tensors("t", {"x": torch.zeros(2)})
        run.write_table("table", pd.DataFrame({"a": [1]}))
        run.write_json("j", {"a": 1})
        run.write_shard("g", 0, tensors={"x": torch.zeros(2)}, frame=pd.DataFrame({"a": [1]}))
    finally:
        os.umask(old)
    modes = {p.relative_to(run.path).as_posix(): oct(p.stat().st_mode & 0o777) for p in run.path.rglob("*") if p.is_file()}
    assert len(modes) == 8 and set(modes.values()) == {oct(0o666 & ~umask)}, modes


# ------------------------------------------------------------------ two writers (item 3)


def _start(root: Path, n: int, sleep: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HELPER), str(root), "locked", str(n), str(sleep)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_a_second_writer_is_refused_while_the_first_holds_the_run(store: RunStore) -> None:
    store.create("killtest", helper.config(N), model="none", run_id="locked").release()
    holder = _start(store.root, N, 30.0)  # writes shard 0, then sleeps
    try:
        assert holder.stdout.readline().strip() == "started"
        second = subprocess.run(
            [sys.executable, str(HELPER), str(store.root), "locked", str(N), "0"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert second.returncode == 3, second.stderr
        assert f"is being written by process {holder.pid} (host" in second.stderr and "Traceback" not in second.stderr
        from interp.runs import RunLockedError

        with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
            store.resume("locked", helper.config(N))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    # the OS released the killed holder's lock: resuming works and completes the sweep
    with store.resume("locked", helper.config(N)) as run:
        helper.sweep(run, N, 0.0)
    assert store.get("locked").status == "finished" and run.finished_shards(helper.GROUP) == list(range(N))


def test_three_concurrent_resumers_never_crash(store: RunStore) -> None:
    store.create("killtest", helper.config(N), model="none", run_id="locked").release()
    for _ in range(2):  # two rounds of three processes started together
        procs = [_start(store.root, N, 0.05) for _ in range(3)]
        deadline = time.monotonic() + 180
        outcomes = []
        for proc in procs:
            _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outcomes.append((proc.returncode, err))
        assert all(code in (0, 3) for code, _ in outcomes), outcomes
        assert any(code == 0 for code, _ in outcomes), outcomes
        assert all("is being written by process" in err for code, err in outcomes if code == 3), outcomes
        run = store.get("locked")
        assert run.status == "finished"
        for index, tensors, _ in run.read_shards(helper.GROUP):
            assert torch.equal(tensors["effect"], helper.make_shard(index)[0]["effect"])


def test_writers_release_their_lock(store: RunStore) -> None:
    from interp.runs import lifecycle
    from interp.runs.lock import _held

    def held_here() -> list[str]:  # a run of another test may hold its lock until it is garbage-collected
        return [key for key in _held if Path(key).parent == store.root.resolve()]

    with lifecycle(store, "k", {"a": 1}, model="m") as run:
        assert len(held_here()) == 1
        run.finish()
    assert held_here() == []
    with pytest.raises(KeyError), lifecycle(store, "k", {"a": 1}, model="m", resume=LATEST):
        pass  # finished runs are not resumed by "latest"
    with store.resume(run.id, {"a": 1}) as again:
        again.write_json("x", 1)
    assert held_here() == [] and store.get(run.id).status == "finished"
    store.get(run.id)  # readers take no lock
    assert _held == {}
    with pytest.raises(ValueError, match="config differs"):
        store.resume(run.id, {"a": 2})
    assert _held == {}  # a refused resume does not keep the lock
