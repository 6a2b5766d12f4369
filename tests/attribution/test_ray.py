"""Attribution on Ray actors: the same exact sweeps and estimates as a run in this process, and a run
whose exact sweeps' shards resume across executors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from interp.attribution.config import AttributionConfig
from interp.attribution.runner import run_attribution, shard_group
from interp.models import load_model
from interp.patching import load_result, patch_sweep
from interp.runs import Run, RunStore
from interp.tasks.config import build_task

CONFIG = AttributionConfig.model_validate({
    "model": "tiny-llama",
    "task": {"kind": "ioi", "n": 4, "seed": 0},
    "methods": ["atp", "ig"],
    "ig": {"steps": 2},
    "sweeps": [{"sweep": "resid_pre"}, {"sweep": "head_z"}],
    "shard_cells": 5,
    "top_k": 3,
})


class Interrupt(Exception):
    """Stops a run from inside, as a Ctrl-C would."""


def stored_names(run: Run) -> list[str]:
    index = run.read_json("comparison")["results"]
    return [*index["exact"].values(), *(name for names in index["estimates"].values() for name in names.values())]


def assert_same_tables(run: Run, reference: Run) -> None:
    assert stored_names(run) == stored_names(reference) and len(stored_names(run)) == 6
    for name in stored_names(reference):
        ours, theirs = run.read_tensors(name), reference.read_tensors(name)
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), (name, key)  # bit for bit
    timing = ["seconds", "exact_seconds"]
    assert run.read_table("comparison").drop(columns=timing).equals(reference.read_table("comparison").drop(columns=timing))
    assert run.read_table("task").equals(reference.read_table("task"))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    torch.set_num_threads(1)  # Ray actors of one CPU run on one thread: reductions in the same order
    run, _ = run_attribution(CONFIG, RunStore(tmp_path_factory.mktemp("local")))
    return run


def test_sharded_exact_sweeps_match_patch_sweep(local_run: Run) -> None:
    """The exact sweeps assembled from shards are the one-call patching sweep, cell for cell."""
    model = load_model("tiny-llama")
    task = build_task(model, CONFIG.task)
    for sweep in ("resid_pre", "head_z"):
        stored = load_result(local_run, f"exact_{sweep}")
        reference = patch_sweep(model, task, sweep)
        assert stored.axes == reference.axes and stored.coords == reference.coords
        torch.testing.assert_close(stored.values, reference.values, rtol=0, atol=1e-5)
        shard_forwards = sum(float(tensors["cost"][0]) for _, tensors, _ in local_run.read_shards(shard_group(sweep)))
        assert stored.cost.forward_passes == shard_forwards + 2  # and the two unpatched runs, as a one-call sweep
        assert (stored.cost.naive_forward_passes, stored.cost.flops) == (reference.cost.naive_forward_passes,
                                                                          reference.cost.flops)
        assert len(local_run.finished_shards(shard_group(sweep))) == -(-stored.values[0].numel() // CONFIG.shard_cells)


def test_ray_run_equals_local_run(ray_cluster: object, local_run: Run, tmp_path: Path) -> None:
    stages: list[str] = []
    run, comparison = run_attribution(CONFIG, RunStore(tmp_path), stages.append, executor="ray", workers=2)
    assert run.status == "finished"
    assert_same_tables(run, local_run)
    assert sorted(stages) == sorted(["exact resid_pre", "exact head_z", "atp", "ig"])
    assert list(comparison.table["method"]) == ["atp", "ig", "atp", "ig"]  # the config's order


def stop_after_shards(count: int) -> Callable[..., None]:
    """A ``Run.write_shard`` replacement that stops the run once ``count`` shards are written."""
    written = []
    original = Run.write_shard

    def write_shard(self: Run, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        written.append(args)
        if len(written) == count:
            raise Interrupt

    return write_shard


def test_run_resumes_across_executors(
    ray_cluster: object, local_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(Run, "write_shard", stop_after_shards(2))
        with pytest.raises(Interrupt):
            run_attribution(CONFIG, store)  # two shards of resid_pre written here
    (info,) = store.list()
    with monkeypatch.context() as patch:
        patch.setattr(Run, "write_shard", stop_after_shards(3))
        with pytest.raises(Interrupt):
            run_attribution(CONFIG, store, resume=info.id, executor="ray", workers=1)
    partial = store.get(info.id)
    assert len(partial.finished_shards("exact_resid_pre")) == 5  # 2 here, 3 on Ray
    run, _ = run_attribution(CONFIG, store, resume=info.id)
    assert run.status == "finished" and run.id == info.id
    assert_same_tables(run, local_run)
