"""Executors: the local pool, Ray actors that survive a killed worker, and the error without Ray."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from interp.cluster import RAY_INSTALL, executor, require_ray
from interp.errors import InvalidArgumentError, MissingDependencyError


class Squarer:
    """A worker whose process dies on its first piece 3: Ray must restart it and re-run the piece."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        (self.folder / f"started-{os.getpid()}").touch()

    def square(self, x: int) -> tuple[int, int]:
        flag = self.folder / "died"
        if x == 3 and not flag.exists():
            flag.touch()
            os._exit(1)
        return x, x * x


def test_local_pool_runs_pieces_in_order(tmp_path: Path) -> None:
    with executor("local", Squarer, (str(tmp_path),)) as pool:
        assert list(pool.map("square", [(1,), (2,)])) == [(1, 1), (2, 4)]
        assert pool.call("square", 5) == (5, 25)


def test_bad_executor_settings_are_named(tmp_path: Path) -> None:
    unknown = pytest.raises(InvalidArgumentError, match=r"unknown executor 'dask'; choose from \['local', 'ray'\]")
    with unknown, executor("dask", Squarer, (str(tmp_path),)):
        pass
    with pytest.raises(InvalidArgumentError, match="add --executor ray"), executor("local", Squarer, (str(tmp_path),), address="auto"):
        pass


def test_missing_ray_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(MissingDependencyError, match="pip install 'interp\\[ray\\]'") as error:
        require_ray()
    assert RAY_INSTALL in str(error.value) and isinstance(error.value, ImportError)


def test_ray_restarts_a_killed_worker_and_reruns_its_piece(ray_cluster: object, tmp_path: Path) -> None:
    with executor("ray", Squarer, (str(tmp_path),), workers=2) as pool:
        results = sorted(pool.map("square", [(x,) for x in range(8)]))
    assert results == [(x, x * x) for x in range(8)]
    assert (tmp_path / "died").exists()
    assert len(list(tmp_path.glob("started-*"))) == 3  # two workers, and the one that died, restarted
