"""The device check of a run on Ray happens on the workers: a driver without CUDA can send
``device: cuda`` work to a cluster's GPUs, and an actor without a working device says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from interp.attribution.config import AttributionConfig
from interp.cli import app
from interp.cluster import Hosted, executor
from interp.config import ConfigError, validate
from interp.errors import WorkerDeviceError
from interp.patching.config import PatchConfig
from interp.runs import RunStore
from interp.steering.fv_config import FunctionVectorConfig
from tests.echo_worker import Echo

SWEEPS = [{"sweep": "resid_pre"}]
CONFIGS = {
    "patch": (PatchConfig, {"model": "tiny-llama", "task": {"kind": "ioi", "n": 2}, "sweeps": SWEEPS}),
    "attribute": (AttributionConfig, {"model": "tiny-llama", "task": {"kind": "ioi", "n": 2}, "methods": ["atp"],
                                      "sweeps": SWEEPS}),
    "steer": (FunctionVectorConfig, {"kind": "function_vectors", "model": "tiny-llama", "n_shots": 1}),
}


@pytest.fixture()
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_validation_leaves_the_device_to_the_workers(command: str, no_cuda: None) -> None:
    schema, raw = CONFIGS[command]
    raw = {**raw, "device": "cuda:1"}
    with pytest.raises(ConfigError, match=r"device: CUDA is not available: torch sees no CUDA GPU here; use one of cpu"):
        validate(raw, schema)
    assert validate(raw, schema, device_on_workers=True).device == "cuda:1"
    with pytest.raises(ConfigError, match=r"device: not a torch device \('gpu' is spelled 'cuda' in torch\)"):
        validate({**raw, "device": "gpu"}, schema, device_on_workers=True)  # the name's form is still checked here


def test_a_worker_checks_its_device_at_its_start(no_cuda: None) -> None:
    hosted = Hosted(Echo, (), "cuda")
    for _ in range(2):  # every call answers with the error
        with pytest.raises(WorkerDeviceError, match=r"device 'cuda' does not work on the Ray worker on host .*: "
                                                    r"CUDA is not available.*or run with --device cpu"):
            hosted.run("where")
    assert Hosted(Echo, (), "cpu").run("where") == "cpu"
    with executor("local", Echo, (), device="cpu") as pool:
        assert pool.call("where") == "cpu"


def test_ray_actors_get_their_device_and_raise_workbench_errors_as_themselves(ray_cluster: object) -> None:
    with executor("ray", Echo, (), device="cpu", workers=2) as pool:
        assert pool.call("where") == "cpu"
        assert list(pool.map("where", [(), ()])) == ["cpu", "cpu"]
    with pytest.raises(WorkerDeviceError, match="does not work on the Ray worker"), \
            executor("ray", Echo, (), device="mps", workers=1) as pool:
        pool.call("where")  # no MPS on these workers: the actor's own check, raised here as itself


@pytest.mark.skipif(torch.cuda.is_available(), reason="the cluster's actors must lack CUDA")
@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_cli_checks_cuda_on_the_driver_locally_and_on_the_actors_with_ray(
    command: str, ray_cluster: object, tmp_path: Path, no_cuda: None
) -> None:
    """The test cluster claims a GPU its actors cannot use, as a node whose driver is broken would."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIGS[command][1], "device": "cuda"}))
    runs = tmp_path / "runs"
    local = CliRunner().invoke(app, [command, str(config), "--runs", str(runs)])
    assert local.exit_code == 2 and "device: CUDA is not available: torch sees no CUDA GPU here" in local.output
    remote = CliRunner().invoke(app, [command, str(config), "--runs", str(runs), "--executor", "ray", "--workers", "1"])
    assert remote.exit_code == 2, remote.output
    assert "error: device 'cuda' does not work on the Ray worker on host" in remote.output
    assert "--device cpu" in remote.output
    assert not RunStore(runs).list()  # refused before any run was created


@pytest.mark.parametrize(
    ("command", "config", "message"),
    [
        ("steer", "data/steer_demo.yaml", "a vectors run runs in this process only; drop --executor"),
        ("steer", "data/dac_demo.yaml", "a dac run runs in this process only; drop --executor"),
        ("attribute", "data/feature_circuit_demo.yaml", "a feature-circuit config runs in this process only"),
    ],
)
def test_runs_without_shards_refuse_the_ray_executor(command: str, config: str, message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [command, config, "--runs", str(tmp_path), "--executor", "ray"])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not RunStore(tmp_path).list()
