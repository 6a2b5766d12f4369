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
    InvalidNameError,
    RunStore,
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
