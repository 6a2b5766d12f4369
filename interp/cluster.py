"""Running independent pieces of work on long-lived workers: in this process, or on a Ray cluster.

A sweep is many independent pieces (shards) that all need the same expensive state (a loaded
model, its unpatched runs). An *executor* holds that state in workers, built once each, and hands
them pieces::

    with executor("ray", ShardWorker, (config,), workers=4, gpus_per_worker=1) as pool:
        plan = pool.call("plan")                      # on one worker
        for result in pool.map("shard", [(0, 0), (0, 1), ...]):   # in the order they finish
            ...

``"local"`` runs one worker in this process. ``"ray"`` starts one Ray actor per worker (with a
GPU each when ``gpus_per_worker`` is set), connected to the cluster at ``address`` or, without
one, to a local cluster started for the run and stopped after it. The caller writes every result
itself, so results land in one place whichever executor computed them, and nothing of the
executor's choice is stored. A worker that dies (its process killed, its node lost) is restarted
by Ray, which rebuilds its state and re-runs the pieces it held: no piece is lost or computed
twice into the results.

Ray is an optional dependency (``pip install 'interp[ray]'``); asking for it without it installed
raises :class:`~interp.errors.MissingDependencyError` naming that command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from interp.errors import InvalidArgumentError, MissingDependencyError

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
        return self.ray.get(getattr(self.actors[0], method).remote(*args))

    def map(self, method: str, items: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        yield from pool.map_unordered(lambda actor, item: getattr(actor, method).remote(*item), list(items))


def package_path() -> str:
    """The directory this ``interp`` package was imported from, so Ray workers import the same code."""
    return str(Path(__file__).resolve().parents[1])


def worker_env() -> dict[str, Any]:
    """The Ray runtime environment of a worker: this package first on its import path."""
    paths = [package_path(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def _worker_count(ray: ModuleType, workers: int | None, gpus_per_worker: float, cpus_per_worker: float) -> int:
    if workers is not None:
        return workers
    resources = ray.cluster_resources()
    if gpus_per_worker:
        count = int(resources.get("GPU", 0) // gpus_per_worker)
        if count < 1:
            raise InvalidArgumentError(
                "the Ray cluster has no GPU for a worker; run on device cpu, or connect to a cluster with GPUs (--address)"
            )
        return count
    return max(1, int(resources.get("CPU", 1) // cpus_per_worker))


@contextmanager
def ray_pool(
    worker_class: type,
    args: tuple[Any, ...],
    *,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0,
    cpus_per_worker: float = 1,
) -> Iterator[RayPool]:
    """Actors of ``worker_class(*args)`` on the Ray cluster at ``address`` (else a local one, stopped after)."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        local = {"num_cpus": int((workers or DEFAULT_LOCAL_WORKERS) * cpus_per_worker)} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
        started = True
    actors: list[Any] = []
    try:
        count = _worker_count(ray, workers, gpus_per_worker, cpus_per_worker)
        remote = ray.remote(worker_class).options(
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
            runtime_env=worker_env(),
        )
        actors = [remote.remote(*args) for _ in range(count)]
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
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0,
) -> Iterator[Pool]:
    """A :class:`Pool` of ``worker_class(*args)`` workers for ``kind`` (see the module docstring)."""
    if kind not in EXECUTORS:
        raise InvalidArgumentError(f"unknown executor {kind!r}; choose from {list(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InvalidArgumentError(f"workers must be at least 1, got {workers}")
    if kind == "local":
        if address is not None:
            raise InvalidArgumentError("an address is for the ray executor; add --executor ray, or drop --address")
        yield LocalPool(worker_class(*args))
        return
    with ray_pool(worker_class, args, address=address, workers=workers, gpus_per_worker=gpus_per_worker) as pool:
        yield pool
