"""``interp app`` serves this machine only unless ``--host`` says otherwise, and warns when it does.

The real start binds loopback only; the open host is checked on the command line it would run (the
``exec`` is replaced), so no test listens on, or sends anything to, a non-loopback address.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from interp import app_cli
from interp.cli import app
from tests.app_server import free_port, running_app


def listening_addresses(pid: int, port: int) -> set[str]:
    """The local addresses on which process ``pid`` listens for TCP on ``port``."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_app_listens_on_loopback_only_by_default(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "interp", "app", "--runs", str(tmp_path), "--port", str(port), "--headless"]
    with running_app(command, port) as process:
        assert listening_addresses(process.pid, port) == {"127.0.0.1"}
    output = process.stdout.read().decode()
    assert f"http://127.0.0.1:{port}" in output and "warning" not in output


@pytest.fixture()
def executed(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines ``interp app`` would ``exec``, instead of running them."""
    calls: list[list[str]] = []
    monkeypatch.setattr(app_cli.os, "execv", lambda path, argv: calls.append(list(argv)))
    return calls


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_default_host_is_loopback_without_a_warning(tmp_path: Path, executed: list[list[str]]) -> None:
    result = CliRunner().invoke(app, ["app", "--runs", str(tmp_path), "--port", "8765", "--headless"])
    assert result.exit_code == 0, result.output
    (command,) = executed
    assert _flag(command, "--server.address") == "127.0.0.1"
    assert "warning" not in result.output


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_open_host_is_passed_on_with_a_warning(host: str, tmp_path: Path, executed: list[list[str]]) -> None:
    result = CliRunner().invoke(app, ["app", "--runs", str(tmp_path), "--host", host, "--headless"])
    assert result.exit_code == 0, result.output
    (command,) = executed
    assert _flag(command, "--server.address") == host
    assert "warning:" in result.output
    assert "anyone who can reach it can load models from any path" in result.output
    assert "delete runs" in result.output


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_warning(host: str) -> None:
    assert app_cli.host_warning(host) is None


def test_streamlit_command_binds_loopback_by_default(tmp_path: Path) -> None:
    command = app_cli.streamlit_command(tmp_path / "Home.py", tmp_path, 8501, headless=True)
    assert _flag(command, "--server.address") == "127.0.0.1"
