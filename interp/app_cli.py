"""``interp app [--runs DIR] [--host HOST]``: start the Streamlit results browser on a runs store.

It replaces itself (``exec``) with ``streamlit run app/Home.py -- --runs DIR`` under this Python, so
the app sees the same ``interp`` as the command and signals (Ctrl-C, a test's terminate) reach the
server directly. The app's files live in the repository's top-level ``app/`` folder, which is
installed as the package ``interp._app`` (see setup.py): :func:`app_entry` finds ``Home.py`` there
with :mod:`importlib.resources`, in a wheel install and in an editable one alike. When ``interp`` is
imported from a source checkout (``python -m interp`` in the repository) that checkout's own
``app/`` is used, whatever else is installed. Usage statistics are switched off: the app makes no
outside calls.

The server listens on ``127.0.0.1`` only unless ``--host`` says otherwise. The app has no
authentication: whoever reaches it can load a model from any path on the server and delete runs,
so :func:`host_warning` says so whenever the host is not a loopback address.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from interp.cli_options import RunsOption
from interp.runs import default_runs_root

APP_PACKAGE = "interp._app"
DEFAULT_HOST = "127.0.0.1"


def app_entry() -> Path | None:
    """The app's ``Home.py`` as a file on disk, or ``None`` if it is not installed with ``interp``.

    The pages sit next to it (``views/``), and ``streamlit run`` needs them as real files, so an
    install that is not a plain directory (a zip) counts as not installed.
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "app" / "Home.py").is_file():
        return checkout / "app" / "Home.py"
    try:
        entry = importlib.resources.files(APP_PACKAGE).joinpath("Home.py")
    except ModuleNotFoundError:
        return None
    return entry if isinstance(entry, Path) and entry.is_file() else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_warning(host: str) -> str | None:
    """The warning to print before serving on ``host``, or ``None`` for a loopback address."""
    if is_loopback(host):
        return None
    return (
        f"warning: serving on {host}, not on this machine only; the app has no authentication, so anyone who "
        "can reach it can load models from any path on this server and delete runs. Leave out --host to serve "
        f"on {DEFAULT_HOST} only."
    )


def app_url(host: str, port: int) -> str:
    """The address to open in a browser on this machine for a server on ``host`` and ``port``."""
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "localhost"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def streamlit_command(entry: Path, runs: Path, port: int, headless: bool, host: str = DEFAULT_HOST) -> list[str]:
    """The command line that serves the app at ``entry`` on ``runs`` at ``host``:``port``."""
    return [
        sys.executable, "-m", "streamlit", "run", str(entry),
        "--server.address", host,
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
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="HOST",
            help="address to listen on; the default serves this machine only. The app has no authentication: "
            "on another address (e.g. 0.0.0.0) anyone who can reach it can load models from any server path "
            "and delete runs",
        ),
    ] = DEFAULT_HOST,
) -> None:
    """Browse the runs store in the Streamlit app (patching, attribution, SAEs, a live model page)."""
    entry = app_entry()
    if entry is None:
        typer.echo(f"error: the app ({APP_PACKAGE}) is not installed with interp; reinstall interp", err=True)
        raise typer.Exit(code=2)
    root = (runs.expanduser() if runs is not None else default_runs_root()).absolute()
    if not root.is_dir():
        typer.echo(f"note: {root} does not exist yet; the app will say so until a run is written there", err=True)
    warning = host_warning(host)
    if warning is not None:
        typer.echo(warning, err=True)
    typer.echo(f"serving the runs in {root} at {app_url(host, port)}", err=True)
    command = streamlit_command(entry, root, port, headless, host)
    os.execv(command[0], command)
