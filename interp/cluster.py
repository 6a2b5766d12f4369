"""Running independent pieces of work on long-lived workers: in this process, or on a Ray cluster.

A sweep is many independent pieces (shards) that all need the same expensive state (a loaded
model, its unpatched runs). An *executor* holds that state in workers, built once each, and hands
them pieces::

    with executor("ray", ShardWorker, (config,), device="cuda", workers=4) as pool:
        plan = pool.call("plan")                      # on one worker
        for result in pool.map("shard", [(0, 0), (0, 1), ...]):   # in the order they finish
            ...

``"local"`` runs one worker in this process. ``"ray"`` starts one Ray actor per worker, connected
to the cluster at ``address`` or, without one, to a local cluster started for the run and stopped
after it. With a ``device``, each worker is built as ``worker_class(*args, device=...)``: on Ray a
CUDA device gives each actor a GPU of its own, which it sees as ``cuda``, and each actor checks at
its start that its device works in its own process (the driver need not have the device at all);
an actor where it does not answers every call with a :class:`~interp.errors.WorkerDeviceError`
naming the device, its host and the fix. Errors of the workbench raised on a worker reach the
caller as the same exception, as if raised here. The caller writes every result
itself, so results land in one place whichever executor computed them, and nothing of the
executor's choice is stored. A worker that dies (its process killed, its node lost) is restarted
by Ray, which rebuilds its state and re-runs the pieces it held: no piece is lost or computed
twice into the results.

Ray is an optional dependency (``pip install 'interp[ray]'``); asking for it without it installed
raises :class:`~interp.errors.MissingDependencyError` naming that command.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from interp.errors import InterpError, InvalidArgumentError, MissingDependencyError, WorkerDeviceError

Executor = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "ray")
RAY_INSTALL = "pip install 'interp[ray]'"
DEFAULT_LOCAL_WORKERS = 2
RESTARTS = 3  # times Ray restarts a dead worker (and re-runs its pieces) before the run fails


class Pool(Protocol):
    """Workers that answer calls: one call on any worker, or many spread over all of them."""

    def call(self, method: str, *args: Any) -> Any: ...

    def map(self, method: str, items: Sequence[tuple[Any, ...]]) -> Iterator[Any]: ...


def require_ray() -> ModuleType:
    """The ``ray`` module, or :class:`MissingDependencyError` naming the pip command."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"the ray executor needs Ray, which is not installed; install it with: {RAY_INSTALL}") from None
    return ray


class LocalPool:
    """One worker in this process; pieces run one after another, in order."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.worker, method)(*args)

    def map(self, method: str, items: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        for item in items:
            yield getattr(self.worker, method)(*item)


class RayPool:
    """One Ray actor per worker; each piece goes to the next free actor."""

    def __init__(self, ray: ModuleType, actors: list[Any]) -> None:
        self.ray = ray
        self.actors = actors

    def call(self, method: str, *args: Any) -> Any:
        with _worker_errors(self.ray):
            return self.ray.get(self.actors[0].run.remote(method, *args))

    def map(self, method: str, items: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        with _worker_errors(self.ray):
            yield from pool.map_unordered(lambda actor, item: actor.run.remote(method, *item), list(items))


@contextmanager
def _worker_errors(ray: ModuleType) -> Iterator[None]:
    """A workbench error raised on a worker, raised here as itself (Ray wraps it with the worker's traceback)."""
    try:
        yield
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, InterpError):
            raise error.cause from None
        raise


def check_worker_device(device: str) -> None:
    """:class:`WorkerDeviceError` unless torch can run on ``device`` in this (worker) process."""
    from interp.config import ConfigError, check_device

    try:
        check_device(device)
    except ConfigError as error:
        raise WorkerDeviceError(
            f"device {device!r} does not work on the Ray worker on host {socket.gethostname()}: {error}; run on a "
            "cluster whose workers have it (--address of a cluster with GPUs for cuda), or run with --device cpu"
        ) from None


class Hosted:
    """The Ray actor around a worker: checks its device, builds the worker once, and runs its methods.

    A workbench error while building (the device does not work here, a model that cannot be loaded)
    is kept and raised by every call, so it reaches the caller as itself instead of as a dead actor.
    """

    def __init__(self, worker_class: type, args: tuple[Any, ...], device: str | None) -> None:
        self.worker: Any = None
        self.error: InterpError | None = None
        try:
            if device is None:
                self.worker = worker_class(*args)
            else:
                check_worker_device(device)
                self.worker = worker_class(*args, device=device)
        except InterpError as error:
            self.error = error

    def run(self, method: str, *args: Any) -> Any:
        if self.error is not None:
            raise self.error
        return getattr(self.worker, method)(*args)


def package_path() -> str:
    """The directory this ``interp`` package was imported from, so Ray workers import the same code."""
    return str(Path(__file__).resolve().parents[1])


def worker_env() -> dict[str, Any]:
    """The Ray runtime environment of a worker: this package first on its import path."""
    paths = [package_path(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def _worker_count(ray: ModuleType, workers: int | None, gpus_per_worker: float, cpus_per_worker: float) -> int:
    resources = ray.cluster_resources()
    gpu_workers = int(resources.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else 0
    if gpus_per_worker and gpu_workers < 1:  # actors asking for a GPU would wait for one forever
        raise InvalidArgumentError(
            "the Ray cluster has no GPU for a worker; run on device cpu, or connect to a cluster with GPUs (--address)"
        )
    if workers is not None:
        return workers
    return gpu_workers or max(1, int(resources.get("CPU", 1) // cpus_per_worker))


def actor_device(device: str) -> tuple[str, float]:
    """The device a Ray actor runs ``device`` work on, and the GPUs it asks for: a CUDA device gets
    one GPU per actor, which Ray shows the actor as ``cuda`` (its only one)."""
    return ("cuda", 1) if device.startswith("cuda") else (device, 0)


@contextmanager
def ray_pool(
    worker_class: type,
    args: tuple[Any, ...],
    *,
    device: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1,
) -> Iterator[RayPool]:
    """Actors of ``worker_class(*args[, device=])`` on the Ray cluster at ``address`` (else a local one, stopped after)."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        local = {"num_cpus": int((workers or DEFAULT_LOCAL_WORKERS) * cpus_per_worker)} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
        started = True
    actors: list[Any] = []
    on, gpus_per_worker = actor_device(device) if device is not None else (None, 0)
    try:
        count = _worker_count(ray, workers, gpus_per_worker, cpus_per_worker)
        remote = ray.remote(Hosted).options(
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
            runtime_env=worker_env(),
        )
        actors = [remote.remote(worker_class, args, on) for _ in range(count)]
        yield RayPool(ray, actors)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


@contextmanager
def executor(
    kind: str,
    worker_class: type,
    args: tuple[Any, ...],
    *,
    device: str | None = None,
    address: str | None = None,
    workers: int | None = None,
) -> Iterator[Pool]:
    """A :class:`Pool` of ``worker_class(*args)`` workers for ``kind`` (see the module docstring).

    With ``device``, workers are built as ``worker_class(*args, device=...)``: here on ``device``
    itself (which the caller's config has checked), on Ray as :func:`actor_device` says, each actor
    checking it at its start.
    """
    if kind not in EXECUTORS:
        raise InvalidArgumentError(f"unknown executor {kind!r}; choose from {list(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InvalidArgumentError(f"workers must be at least 1, got {workers}")
    if kind == "local":
        if address is not None:
            raise InvalidArgumentError("an address is for the ray executor; add --executor ray, or drop --address")
        yield LocalPool(worker_class(*args) if device is None else worker_class(*args, device=device))
        return
    with ray_pool(worker_class, args, device=device, address=address, workers=workers) as pool:
        yield pool
