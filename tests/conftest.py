"""Shared fixtures: tiny random models of every family (fast), and the embedded default (slow).

``INTERP_TEST_DEVICE`` (default ``cpu``) is the device these fixtures load their models on, so
``INTERP_TEST_DEVICE=cuda pytest -m "not slow"`` runs the tests that use them on the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import interp  # noqa: E402
from interp.models.tiny import TINY_MODELS  # noqa: E402

DEVICE = os.environ.get("INTERP_TEST_DEVICE", "cpu")

PROMPTS = [
    "When Mary and John went to the store, John gave a drink to",
    "Then, Alice and Bob had a long talk at the park. Bob handed the",
    "After the lunch, Tom and",
]


@pytest.fixture(params=TINY_MODELS)
def tiny(request: pytest.FixtureRequest) -> interp.Model:
    return interp.load_model(request.param, device=DEVICE)


@pytest.fixture(params=TINY_MODELS)
def tiny64(request: pytest.FixtureRequest) -> interp.Model:
    return interp.load_model(request.param, dtype=torch.float64, device=DEVICE)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Run a test on one torch thread: tiny models run far faster on one thread than on two contended
    ones (no OpenMP barrier waits). Directories of such tests use it in their own conftest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smollm() -> interp.Model:
    return interp.load_model("smollm2-135m", device=DEVICE)


def no_hooks_left(model: interp.Model) -> bool:
    return all(
        not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.hf.modules()
    )


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    """A local Ray cluster of two CPUs for the whole session (starting one takes seconds), and one GPU
    in name: on a machine without CUDA, an actor placed on it finds no GPU (its device check)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
