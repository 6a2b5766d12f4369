"""Every command ends an error with one line and a status, never a traceback; ``--debug`` shows it.

Statuses: 2 for the workbench's own errors and for OSErrors (the line names the path), 1 for anything
unexpected (the line names the type and points to ``--debug``).
"""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import interp.app_cli
import interp.config
import interp.models
import interp.sae.io
import interp.steering.config
from interp.cli import app
from interp.cli_errors import describe
from interp.errors import InterpError
from interp.runs import RunStore

UNEXPECTED = r"^error: unexpected RuntimeError: boom \(run with --debug for the traceback; please report\)$"

PATCH = "model: tiny-llama\ndevice: {device}\ntask: {{kind: ioi, n: 2, seed: 0}}\nsweeps: [{{sweep: resid_pre}}]\n"
ATTRIBUTE = (
    "model: tiny-llama\ndevice: {device}\ntask: {{kind: ioi, n: 2, seed: 0}}\nmethods: [atp]\n"
    "sweeps: [{{sweep: resid_pre, layers: [0]}}]\n"
)
SAE = (
    "model: tiny-llama\ndevice: {device}\ntraining_tokens: 1500\ncheckpoint_every: 0\n"
    "data: {{source: {{kind: text, paths: ['{corpus}']}}, context_size: 24, eval_rows: 4}}\n"
    "store: {{batch_size: 500, buffer_rows: 16, cache: false}}\nfeatures: {{enabled: false}}\n"
    "saes: [{{name: s, site: blocks.1.hook_resid_post, d_sae: 64, activation: {{kind: topk, k: 4}}}}]\n"
)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def assert_one_line(result: Result, code: int, pattern: str) -> None:
    """Exit ``code``, no traceback, and the last line of stderr matching ``pattern``."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def config_for(command: str, tmp_path: Path, device: str) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n\n".join(f"Alice and Bob went to the garden, time {i}." for i in range(40)))
    template = {"patch": PATCH, "attribute": ATTRIBUTE, "sae train": SAE}[command]
    path = tmp_path / "config.yaml"
    path.write_text(template.format(device=device, corpus=corpus))
    return path


CONFIG_COMMANDS = ["patch", "attribute", "sae train"]


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
def test_cuda_on_a_cpu_machine_is_a_config_error(command: str, tmp_path: Path) -> None:
    """The device is checked when the config is validated: a clear error, exit 2, and no run left behind."""
    config = config_for(command, tmp_path, "cuda")
    result = invoke(*command.split(), str(config), "--runs", str(tmp_path / "runs"))
    assert_config_error(result, r"device: CUDA is not available")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_device_string_is_a_config_error(tmp_path: Path) -> None:
    config = config_for("patch", tmp_path, "cpu")
    result = invoke("patch", str(config), "--device", "bogus", "--runs", str(tmp_path / "runs"))
    assert_config_error(result, r"device: .*bogus")


def assert_config_error(result: Result, pattern: str) -> None:
    """Exit 2, no traceback, an ``error: invalid config`` header and one line per problem."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: invalid config"), result.stderr
    assert any(re.search(pattern, line) for line in lines[1:]), result.stderr


@pytest.mark.parametrize("command", [*CONFIG_COMMANDS, "sae check", "sae info"])
def test_missing_config_path_is_one_line(command: str, tmp_path: Path) -> None:
    result = invoke(*command.split(), str(tmp_path / "missing.yaml"))
    assert_one_line(result, 2, r"^error: .*missing\.yaml")


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom")


# command line (with {tmp} for a scratch directory) -> the internal function to make fail
FAILING = {
    "sites tiny-llama": (interp.models, "load_model"),
    "patch {tmp}/c.yaml": (interp.config, "load_config"),
    "attribute {tmp}/c.yaml": (interp.config, "read_mapping"),
    "steer {tmp}/c.yaml": (interp.steering.config, "load_steer_config"),
    "tcav {tmp}/c.yaml": (interp.config, "load_config"),
    "sae train {tmp}/c.yaml": (interp.config, "load_config"),
    "sae check {tmp}/c.yaml": (interp.config, "load_config"),
    "sae info {tmp}": (interp.sae.io, "load"),
    "runs --runs {tmp}": (RunStore, "list"),
    "app --runs {tmp} --headless": (interp.app_cli, "app_entry"),
}


@pytest.mark.parametrize("line", list(FAILING))
def test_unexpected_error_is_one_line(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, name = FAILING[line]
    monkeypatch.setattr(owner, name, _boom)
    result = invoke(*line.format(tmp=tmp_path).split())
    assert_one_line(result, 1, UNEXPECTED)


@pytest.mark.parametrize("line", list(FAILING))
def test_debug_reraises_the_error(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, name = FAILING[line]
    monkeypatch.setattr(owner, name, _boom)
    result = invoke("--debug", *line.format(tmp=tmp_path).split())
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "boom"


def test_os_error_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "runs"))

    monkeypatch.setattr(RunStore, "list", read_only)
    (tmp_path / "runs").mkdir()
    result = invoke("runs", "--runs", str(tmp_path / "runs"))
    assert_one_line(result, 2, rf"^error: Read-only file system: {tmp_path}/runs$")


def test_workbench_error_raised_outside_a_command_catch_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise InterpError("the store is locked; wait for the other run")

    monkeypatch.setattr(RunStore, "list", refuse)
    assert_one_line(invoke("runs", "--runs", str(tmp_path)), 2, r"^error: the store is locked; wait for the other run$")


@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (InterpError("bad key"), "error: bad key", 2),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y"), "error: No such file or directory: /x/y", 2),
        (OSError("disk on fire"), "error: disk on fire", 2),
        (ValueError("a\nb"), "error: unexpected ValueError: a b (run with --debug for the traceback; please report)", 1),
        (KeyError(), "error: unexpected KeyError (run with --debug for the traceback; please report)", 1),
    ],
)
def test_describe(error: Exception, line: str, code: int) -> None:
    assert describe(error) == (line, code)


def test_debug_prints_the_traceback_from_the_command_line(tmp_path: Path) -> None:
    config = config_for("patch", tmp_path, "cpu")
    # the real command line in a fresh process, with the runner made to fail as a bug would
    script = (
        "import sys\n"
        "import interp.patching.runner as runner\n"
        "def boom(*args, **kwargs):\n"
        "    raise RuntimeError('boom')\n"
        "runner.run_config = boom\n"
        "from interp.cli import app\n"
        "app(sys.argv[1:], prog_name='interp')\n"
    )
    command = [sys.executable, "-c", script]
    arguments = ["patch", str(config), "--runs", str(tmp_path / "runs")]
    plain = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr + plain.stdout
    assert re.search(UNEXPECTED, plain.stderr.strip().splitlines()[-1]), plain.stderr
    debug = subprocess.run([*command, "--debug", *arguments], capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().endswith("RuntimeError: boom")
