"""``interp app [--runs DIR]``: start the Streamlit results browser on a runs store.

It replaces itself (``exec``) with ``streamlit run app/Home.py -- --runs DIR`` under this Python, so
the app sees the same ``interp`` as the command and signals (Ctrl-C, a test's terminate) reach the
server directly. The app lives in the repository's ``app/`` folder (next to the
``interp`` package in a source checkout or an editable install). Usage statistics are switched off:
the app makes no outside calls.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from interp.cli_options import RunsOption
from interp.runs import default_runs_root

APP_ENTRY = Path(__file__).resolve().parent.parent / "app" / "Home.py"


def streamlit_command(runs: Path, port: int, headless: bool) -> list[str]:
    """The command line that serves the app on ``runs`` at ``port``."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_ENTRY),
        "--server.port", str(port),
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--", "--runs", str(runs),
    ]


def app(
    runs: RunsOption = None,
    port: Annotated[int, typer.Option(help="port to serve on")] = 8501,
    headless: Annotated[bool, typer.Option(help="do not open a browser window (servers, CI)")] = False,
) -> None:
    """Browse the runs store in the Streamlit app (patching, attribution, SAEs, a live model page)."""
    if not APP_ENTRY.is_file():
        typer.echo(f"error: the app is not at {APP_ENTRY}; run `interp app` from a source checkout of interp", err=True)
        raise typer.Exit(code=2)
    root = (runs.expanduser() if runs is not None else default_runs_root()).absolute()
    if not root.is_dir():
        typer.echo(f"note: {root} does not exist yet; the app will say so until a run is written there", err=True)
    typer.echo(f"serving the runs in {root} at http://localhost:{port}", err=True)
    command = streamlit_command(root, port, headless)
    os.execv(command[0], command)
