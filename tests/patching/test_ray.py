"""Patching on Ray actors: the same tables as a run in this process, and runs that resume across executors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from interp.patching.config import PatchConfig
from interp.patching.persist import load_result, result_names
from interp.patching.runner import run_config
from interp.runs import Run, RunStore

CONFIG = PatchConfig.model_validate({
    "model": "tiny-llama",
    "dtype": "float32",
    "task": {"kind": "ioi", "n": 4, "seed": 0},
    "sweeps": [{"sweep": "resid_pre"}, {"sweep": "head_z"}],
    "shard_cells": 3,
})


class Interrupt(Exception):
    """Stops a run from its progress callback, as a Ctrl-C would."""


def stop_after(shards: int) -> Callable[[int, int], None]:
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == shards:
            raise Interrupt

    return progress


def assert_same_tables(run: Run, reference: Run) -> None:
    assert result_names(run) == result_names(reference)
    for name in result_names(reference):
        ours, theirs = run.read_tensors(name), reference.read_tensors(name)
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), (name, key)  # bit for bit
        assert run.read_table(f"{name}_summary").equals(reference.read_table(f"{name}_summary"))
        assert load_result(run, name).cost.forward_passes == load_result(reference, name).cost.forward_passes
    assert run.read_table("task").equals(reference.read_table("task"))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    torch.set_num_threads(1)  # Ray actors of one CPU run on one thread: reductions in the same order
    return run_config(CONFIG, RunStore(tmp_path_factory.mktemp("local")))


def test_ray_run_equals_local_run(ray_cluster: object, local_run: Run, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    run = run_config(CONFIG, RunStore(tmp_path), executor="ray", workers=2, progress=lambda d, t: seen.append((d, t)))
    assert run.status == "finished"
    assert_same_tables(run, local_run)
    done = [d for d, _ in seen]
    assert seen[-1][0] == seen[-1][1] and len(seen) == len(run.finished_shards("sweep0_resid_pre")) + len(
        run.finished_shards("sweep1_head_z")
    )  # one tick per shard
    assert all(0 < b - a <= 3 for a, b in zip([0, *done], done, strict=False))


def test_run_resumes_across_executors(ray_cluster: object, local_run: Run, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(Interrupt):
        run_config(CONFIG, store, progress=stop_after(2))  # two shards written here
    (info,) = store.list()
    with pytest.raises(Interrupt):
        run_config(CONFIG, store, resume=info.id, executor="ray", workers=1, progress=stop_after(3))
    partial = store.get(info.id)
    assert len(partial.finished_shards("sweep0_resid_pre")) + len(partial.finished_shards("sweep1_head_z")) >= 5
    run = run_config(CONFIG, store, resume=info.id)
    assert run.status == "finished"
    assert_same_tables(run, local_run)


def test_cli_without_ray_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    import yaml
    from typer.testing import CliRunner

    from interp.cli import app

    real_import = builtins.__import__

    def no_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG.model_dump()))
    result = CliRunner().invoke(app, ["patch", str(config), "--runs", str(tmp_path / "runs"), "--executor", "ray"])
    assert result.exit_code == 2
    assert "pip install 'interp[ray]'" in result.output and not RunStore(tmp_path / "runs").list()
