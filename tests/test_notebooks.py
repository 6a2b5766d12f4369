"""The notebooks in ``notebooks/`` run top to bottom: every ``notebooks/*.py`` is executed in CI.

The notebooks are jupytext percent-format scripts (``# %%`` code cells, ``# %% [markdown]`` text
cells), the source of truth; outputs are never committed. Each slow test converts one notebook to
an in-memory notebook and executes it with nbclient on an IPython kernel that runs *this*
interpreter (a kernelspec written to a temporary directory, so a ``python3`` kernel that resolves
``python`` from ``PATH`` to some other installation is never used), with the repository root as
working directory and on ``PYTHONPATH`` (this checkout's ``interp`` is the one imported) and
``HF_HUB_OFFLINE=1``. A failing cell fails the test with the cell's source and its traceback.

A notebook added to ``notebooks/`` is picked up without touching this file. The fast test checks
every notebook's form: it parses as a percent-format notebook, has text cells, and never calls
``.show()`` on a figure (which would open a browser when the notebook runs as a script; a figure is
shown inline by ending a cell with it).

Each execution prints its wall time and the kernel's CPU time (``pytest -s``): on a loaded machine
the wall time says little, the CPU time divided by the cores used bounds what an idle machine takes.
With ``INTERP_NOTEBOOK_OUTPUT=DIR`` the executed notebooks, outputs included, are written to ``DIR``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
KERNEL_NAME = "interp-notebook-tests"
OUTPUT_DIR_ENV = "INTERP_NOTEBOOK_OUTPUT"  # set to a directory to keep the executed notebooks (.ipynb)
CELL_TIMEOUT_S = 1800  # per cell; a notebook takes minutes, this only catches a hung kernel
SHOW_CALL = re.compile(r"\.show\(")
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def _ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def _read(path: Path):
    import jupytext

    return jupytext.read(path, fmt="py:percent")


def _kernel_manager(kernel_dir: Path):
    """A kernel manager whose only kernelspec runs ``sys.executable -m ipykernel_launcher``."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = kernel_dir / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({sys.executable})",
        "language": "python",
        "env": {"HF_HUB_OFFLINE": "1", "PYTHONPATH": python_path},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_form(path: Path) -> None:
    notebook = _read(path)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert "markdown" in kinds, f"{path.name} has no markdown cell: say what the notebook shows"
    assert "code" in kinds, f"{path.name} has no code cell"
    assert "# %%" in path.read_text(), f"{path.name} is not in jupytext percent format ('# %%' cells)"
    for cell in notebook.cells:
        if cell.cell_type == "code" and SHOW_CALL.search(cell.source):
            pytest.fail(
                f"{path.name} calls .show() in the cell\n{cell.source}\n"
                "end the cell with the figure instead (it is shown inline; .show() opens a browser as a script)"
            )


def test_notebooks_exist_and_no_outputs_are_tracked() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert {"ioi_circuit.py", "sae.py", "steering.py", "function_vectors.py", "tcav.py", "bring_your_own_model.py"} <= names
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "*.ipynb"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not tracked, f"notebook outputs are committed: {tracked}; the .py files are the source of truth"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    import psutil
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = _read(path)
    kernel_cpu: list[float] = []

    def read_kernel_cpu(**_: object) -> None:  # the kernel's own CPU time, before it is shut down
        try:
            times = psutil.Process(client.km.provisioner.process.pid).cpu_times()
        except (AttributeError, psutil.Error):
            return
        kernel_cpu.append(times.user + times.system)

    client = NotebookClient(
        notebook,
        km=_kernel_manager(tmp_path / "kernels"),
        timeout=CELL_TIMEOUT_S,
        startup_timeout=180,
        resources={"metadata": {"path": str(REPO)}},
        on_notebook_complete=read_kernel_cpu,
    )
    started = time.perf_counter()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
        pytest.fail(f"notebooks/{path.name} failed:\n{ANSI_COLOUR.sub('', str(error))}", pytrace=False)
    if os.environ.get(OUTPUT_DIR_ENV):
        import nbformat

        out = Path(os.environ[OUTPUT_DIR_ENV])
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, out / f"{path.stem}.ipynb")
    cpu = f", {kernel_cpu[0]:.0f} s kernel CPU" if kernel_cpu else ""
    print(f"notebooks/{path.name} executed in {time.perf_counter() - started:.0f} s wall{cpu}")
