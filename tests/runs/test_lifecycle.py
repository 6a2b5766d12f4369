"""One run lifecycle for every command that writes a run: failure recorded on any exception, Ctrl-C
included, and ``--resume`` continuing from the last finished shard to the uninterrupted result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import interp.attribution.runner as attribution_runner
import interp.sae as sae_pkg
from interp.attribution.comparison import load_comparison
from interp.cli import app
from interp.patching.persist import load_result, result_names
from interp.runs import FAILED, FINISHED, LATEST, ConfigMismatchError, Run, RunNotFoundError, RunStore, lifecycle

PATCH_CONFIG = """
model: tiny-llama
dtype: float64
task: {kind: ioi, n: 4, seed: 0}
sweeps: [{sweep: resid_pre}]
shard_cells: 2
"""
ATTRIBUTION_CONFIG = """
model: tiny-llama
dtype: float64
task: {kind: ioi, n: 3, seed: 0}
methods: [atp, relp, ig]
sweeps:
  - {sweep: resid_pre, layers: [0, 2]}
  - {sweep: head_z, layers: [1]}
ig: {steps: 2}
"""



def interrupt_after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, calls: int,
                    when: Callable[..., bool] = lambda *a, **k: True) -> None:
    """Make ``owner.name`` raise KeyboardInterrupt right after its ``calls``-th matching call returns."""
    original = getattr(owner, name)
    seen = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            seen["n"] += 1
            if seen["n"] == calls:
                raise KeyboardInterrupt
        return result

    monkeypatch.setattr(owner, name, wrapper)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def only_run(root: Path) -> Run:
    (info,) = RunStore(root).list()
    return RunStore(root).get(info.id)


def assert_interrupted(result: Any, root: Path) -> Run:
    assert result.exit_code == 130, result.output  # the exit status of a Ctrl-C
    run = only_run(root)
    assert run.status == FAILED and run.manifest["error"] == "KeyboardInterrupt"
    assert "KeyboardInterrupt" in run.manifest["traceback"]
    return run


def test_lifecycle_records_the_reason_and_reraises(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with lifecycle(store, "demo", {"a": 1}, model="m"):
            raise KeyboardInterrupt
    with pytest.raises(ZeroDivisionError):
        with lifecycle(store, "demo", {"a": 2}, model="m"):
            1 / 0  # noqa: B018
    interrupted, divided = sorted(store.list(), key=lambda i: i.created or "")
    assert (interrupted.status, interrupted.error) == (FAILED, "KeyboardInterrupt")
    assert (divided.status, divided.error) == (FAILED, "ZeroDivisionError: division by zero")
    with lifecycle(store, "demo", {"a": 1}, model="m", resume=LATEST) as run:
        assert run.id == interrupted.id and run.status == "running" and run.manifest["traceback"] is None
    assert run.status == "running"  # not finished by the block: continued later
    with pytest.raises(RunNotFoundError, match="no unfinished demo run with this config"):
        with lifecycle(store, "demo", {"a": 3}, model="m", resume=LATEST):
            pass
    with pytest.raises(ConfigMismatchError, match="is a demo run, not a patching run"):
        with lifecycle(store, "patching", {"a": 2}, model="m", resume=divided.id):
            pass


def test_patch_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "patch.yaml"
    config.write_text(PATCH_CONFIG)
    assert invoke("patch", config, "--runs", tmp_path / "whole").exit_code == 0
    with monkeypatch.context() as patch:
        interrupt_after(patch, Run, "write_shard", calls=3)
        interrupted = assert_interrupted(invoke("patch", config, "--runs", tmp_path / "cut"), tmp_path / "cut")
    assert interrupted.finished_shards("sweep0_resid_pre") == [0, 1, 2]
    result = invoke("patch", config, "--runs", tmp_path / "cut", "--resume", "latest")
    assert result.exit_code == 0, result.output
    resumed, whole = only_run(tmp_path / "cut"), only_run(tmp_path / "whole")
    assert resumed.id == interrupted.id and resumed.status == FINISHED and resumed.manifest["error"] is None
    for name in result_names(whole):
        ours, theirs = load_result(resumed, name), load_result(whole, name)
        assert torch.equal(ours.values, theirs.values) and torch.equal(ours.clean, theirs.clean)


def test_attribute_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "attribution.yaml"
    config.write_text(ATTRIBUTION_CONFIG)
    assert invoke("attribute", config, "--runs", tmp_path / "whole").exit_code == 0
    with monkeypatch.context() as patch:
        interrupt_after(patch, attribution_runner, "save_comparison", calls=3)  # both exact sweeps and atp done
        interrupted = assert_interrupted(invoke("attribute", config, "--runs", tmp_path / "cut"), tmp_path / "cut")
    assert set(load_comparison(interrupted).estimates) == {"atp"}
    calls: list[list[str]] = []
    original = attribution_runner.compare
    monkeypatch.setattr(attribution_runner, "compare", lambda *a, **k: calls.append(list(a[3])) or original(*a, **k))
    result = invoke("attribute", config, "--runs", tmp_path / "cut", "--resume", interrupted.id)
    assert result.exit_code == 0, result.output
    assert calls == [["relp"], ["ig"]]  # finished stages are read back, not recomputed
    resumed, whole = load_comparison(only_run(tmp_path / "cut")), load_comparison(only_run(tmp_path / "whole"))
    assert only_run(tmp_path / "cut").status == FINISHED
    timing = ["seconds", "exact_seconds"]
    assert resumed.table.drop(columns=timing).equals(whole.table.drop(columns=timing))
    for sweep, exact in whole.exact.items():
        assert torch.equal(resumed.exact[sweep].values, exact.values)
    for method, results in whole.estimates.items():
        for sweep, estimate in results.items():
            assert torch.equal(resumed.estimates[method][sweep].values, estimate.values), (method, sweep)


def sae_config(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n\n".join(f"Alice and Bob went to the garden, and Bob gave a ring to Alice, time {i}." for i in range(40)))
    config = tmp_path / "sae.yaml"
    config.write_text(
        f"model: tiny-llama\ndevice: cpu\ntraining_tokens: 1500\ncheckpoint_every: 1\n"
        f"data: {{source: {{kind: text, paths: ['{corpus}']}}, context_size: 24, eval_rows: 4}}\n"
        "store: {batch_size: 500, buffer_rows: 16, cache: false}\n"
        "features: {enabled: false}\n"
        "saes: [{name: s, site: blocks.1.hook_resid_post, d_sae: 64, activation: {kind: topk, k: 4}}]\n"
    )
    return config


def test_sae_train_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = sae_config(tmp_path)
    assert invoke("sae", "train", config, "--runs", tmp_path / "whole", "--no-progress").exit_code == 0
    with monkeypatch.context() as patch:
        interrupt_after(patch, Run, "update_manifest", calls=2,
                        when=lambda self, **fields: fields.get("progress", {}).get("done", 0) >= 1)
        interrupted = assert_interrupted(
            invoke("sae", "train", config, "--runs", tmp_path / "cut", "--no-progress"), tmp_path / "cut"
        )
    assert interrupted.manifest["progress"]["done"] == 2
    result = invoke("sae", "train", config, "--runs", tmp_path / "cut", "--no-progress", "--resume", "latest")
    assert result.exit_code == 0, result.output
    resumed, whole = only_run(tmp_path / "cut"), only_run(tmp_path / "whole")
    assert resumed.id == interrupted.id and resumed.status == FINISHED
    ours, theirs = sae_pkg.load(resumed.path / "saes" / "s"), sae_pkg.load(whole.path / "saes" / "s")
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    assert resumed.read_table("train_log").equals(whole.read_table("train_log"))
