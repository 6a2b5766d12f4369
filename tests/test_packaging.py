"""The wheel ships the Streamlit app, and ``interp app`` finds and serves it from a wheel install.

The wheel is built from a copy of the checkout's files (so no build output lands in the checkout),
with the installed setuptools and no network (``pip wheel --no-deps --no-build-isolation``), then
installed with ``pip install --target`` into a folder that is put first on ``PYTHONPATH`` of
subprocesses run from an unrelated directory: there ``interp`` comes from the wheel, not from the
checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.app_server import free_port, running_app

REPO = Path(__file__).resolve().parent.parent


def checkout_files() -> list[str]:
    """The checkout's files that a build may read: tracked ones and new ones git does not ignore."""
    if shutil.which("git") and (REPO / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        return [name for name in listed if (REPO / name).is_file()]
    skip = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".venv", "data"}
    return [
        str(path.relative_to(REPO)) for path in REPO.rglob("*")
        if path.is_file() and not skip & set(path.relative_to(REPO).parts) and ".egg-info" not in str(path)
    ]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(source)],
        check=True, capture_output=True,
    )
    (built,) = out.glob("interp-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )
    return target


def outside_env(target: Path, **extra: str) -> dict[str, str]:
    """An environment in which ``import interp`` finds the installed wheel first."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return {**env, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", **extra}


def test_wheel_ships_every_file_of_the_app(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    app_files = sorted(path.relative_to(REPO / "app").as_posix() for path in (REPO / "app").rglob("*.py"))
    assert {"Home.py", "browse.py"} <= set(app_files) and any(name.startswith("views/") for name in app_files)
    missing = [name for name in app_files if f"interp/_app/{name}" not in names]
    assert not missing, f"app files missing from the wheel: {missing}"
    assert "interp/app_cli.py" in names and not any(name.startswith("app/") for name in names)


def test_installed_wheel_resolves_the_app_outside_a_checkout(installed: Path, tmp_path: Path) -> None:
    script = (
        "import interp; from interp.app_cli import app_entry; entry = app_entry(); "
        "print(interp.__file__); print(entry); print((entry.parent / 'views' / 'patching.py').is_file())"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=outside_env(installed),
                          capture_output=True, text=True, check=True)
    package, entry, views = done.stdout.split("\n")[:3]
    assert Path(package).resolve().is_relative_to(installed.resolve())
    assert Path(entry).resolve() == (installed / "interp" / "_app" / "Home.py").resolve()
    assert views == "True"


def test_installed_app_runs_its_pages(installed: Path, tmp_path: Path) -> None:
    """The installed Home.py, run by Streamlit's script runner, imports its own modules and draws the overview."""
    script = (
        "from streamlit.testing.v1 import AppTest; from interp.app_cli import app_entry; "
        "at = AppTest.from_file(str(app_entry()), default_timeout=60).run(); "
        "assert not at.exception, [e.value for e in at.exception]; "
        "print(' '.join(e.value for e in [*at.info, *at.warning, *at.error]))"
    )
    empty = tmp_path / "runs"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                          env=outside_env(installed, INTERP_RUNS_DIR=str(empty)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the overview page showed nothing for an empty store"




def test_interp_app_serves_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", "import typer; from interp.app_cli import app; typer.run(app)",
               "--runs", str(tmp_path), "--port", str(port), "--headless"]
    with running_app(command, port, cwd=tmp_path, env=outside_env(installed)):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
