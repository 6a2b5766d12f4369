"""The batch CLI: config validation, an end-to-end run that loads back, and resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from interp.cli import app
from interp.config import ConfigError, load_config
from interp.patching.config import PatchConfig
from interp.patching.persist import load_result, result_names
from interp.patching.runner import COST_FIELDS, assemble
from interp.runs import RunStore

CONFIG = {
    "model": "tiny-llama",
    "dtype": "float64",
    "task": {"kind": "ioi", "n": 4, "seed": 0},
    "sweeps": [{"sweep": "resid_pre"}, {"sweep": "head_z"}],
    "shard_cells": 4,
}


def _write(tmp_path: Path, config: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_bad_keys_and_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sweeps\.0\.sweep: .*unknown sweep 'resid'"):
        load_config(_write(tmp_path, {**CONFIG, "sweeps": [{"sweep": "resid"}]}), PatchConfig)
    with pytest.raises(ConfigError, match="metrik: unknown key; did you mean 'metric'"):
        load_config(_write(tmp_path, {**CONFIG, "metrik": "logit_diff"}), PatchConfig)
    with pytest.raises(ConfigError, match="task.n: Input should be greater than or equal to 1"):
        load_config(_write(tmp_path, {**CONFIG, "task": {"n": 0}}), PatchConfig)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", PatchConfig)
    toml = tmp_path / "config.toml"
    toml.write_text('model = "tiny-llama"\n[[sweeps]]\nsweep = "mlp_out"\n')
    assert load_config(toml, PatchConfig).sweeps[0].sweep == "mlp_out"
    result = CliRunner().invoke(app, ["patch", str(_write(tmp_path, {**CONFIG, "direction": "sideways"}))])
    assert result.exit_code == 2 and "direction" in result.output


def test_cli_run_writes_results_that_load_back(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["patch", str(_write(tmp_path, CONFIG)), "--runs", str(out)])
    assert result.exit_code == 0, result.output
    (info,) = RunStore(out).list()
    assert info.status == "finished" and info.kind == "patching"
    run = RunStore(out).get(info.id)
    assert result_names(run) == ["sweep0_resid_pre", "sweep1_head_z"]
    resid = load_result(run, "sweep0_resid_pre")
    assert resid.axes == ("layer", "pos") and resid.values.shape[:2] == (4, 3)
    assert run.read_table("task").shape[0] == 4
    assert run.read_table("sweep1_head_z_summary").shape[0] == 3 * 4
    summary = run.manifest["summary"]["sweep0_resid_pre"]
    assert summary["flop_fraction"] < 0.5 and summary["forward_passes"] > 0
    listing = CliRunner().invoke(app, ["runs", "--runs", str(out)])
    assert info.id in listing.output


def _run_cli(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "interp", "patch", str(config), "--runs", str(out), *extra],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def test_killed_sweep_resumes_to_identical_numbers(tmp_path: Path) -> None:
    config = _write(tmp_path, {**CONFIG, "shard_cells": 2, "sweeps": [{"sweep": "resid_pre"}]})
    reference_root, killed_root = tmp_path / "reference", tmp_path / "killed"
    assert _run_cli(config, reference_root).wait(timeout=600) == 0
    process = _run_cli(config, killed_root)
    deadline = time.time() + 600
    shards = []
    while time.time() < deadline and process.poll() is None:
        runs = list(killed_root.glob("*/shards/*/*.done"))
        if len(runs) >= 3:
            shards = runs
            break
        time.sleep(0.05)
    if process.poll() is not None:
        pytest.fail("the sweep finished before it could be killed; lower shard_cells")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert shards, "no shard was finished before the kill"
    (killed,) = RunStore(killed_root).list()
    assert killed.status == "running"
    assert _run_cli(config, killed_root, "--resume", "latest").wait(timeout=600) == 0
    (resumed,) = RunStore(killed_root).list()
    assert resumed.id == killed.id and resumed.status == "finished"
    (reference,) = RunStore(reference_root).list()
    ours = load_result(RunStore(killed_root).get(resumed.id), "sweep0_resid_pre")
    theirs = load_result(RunStore(reference_root).get(reference.id), "sweep0_resid_pre")
    assert torch.equal(ours.values, theirs.values)
    assert torch.equal(ours.clean, theirs.clean) and torch.equal(ours.corrupt, theirs.corrupt)


def test_shards_written_before_a_cost_field_was_added_still_assemble(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    config_path = _write(tmp_path, {**CONFIG, "sweeps": [{"sweep": "resid_pre"}]})
    assert CliRunner().invoke(app, ["patch", str(config_path), "--runs", str(out)]).exit_code == 0
    (info,) = RunStore(out).list()
    run = RunStore(out).get(info.id)
    name = "sweep0_resid_pre"
    finished = load_result(run, name)
    tensors, _ = run.read_shard(name, 0)
    dropped = float(tensors["cost"][-1])
    assert dropped > 0, "shard 0 (layer 0) has no-op rows: the IOI pairs share a prefix"
    old_format = {**tensors, "cost": tensors["cost"][: len(COST_FIELDS) - 1]}  # before noop_rows existed
    run.write_shard(name, 0, tensors=old_format)
    baselines = {"clean": finished.clean, "corrupt": finished.corrupt}
    unpatched = torch.zeros(len(COST_FIELDS), dtype=torch.float64)  # the unpatched runs' cost: no FLOPs or no-op rows
    result = assemble(run, name, "resid_pre", finished.axes, finished.coords, finished.metric,
                      load_config(config_path, PatchConfig).direction, baselines, unpatched, finished.position_labels)
    assert torch.equal(result.values, finished.values)
    assert result.cost.noop_rows == finished.cost.noop_rows - dropped
    assert result.cost.flops == finished.cost.flops
