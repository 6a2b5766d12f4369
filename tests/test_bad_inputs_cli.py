"""Bad command lines end with one line saying what is wrong, an exit status, and no traceback.

Each row is a command line (``{name}`` stands for a file the ``inputs`` fixture writes), its exit
status, and a regex. A regex that starts with ``^error:`` must match the first line of stderr (the
workbench's own one-line errors; some add indented details below it); any other is searched in
stderr, where Typer puts its usage errors (unknown options and commands, missing arguments).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import interp.app_cli
from interp.cli import app

PATCH = "model: tiny-llama\ntask: {kind: ioi, n: 2, seed: 0}\nsweeps: [{sweep: resid_pre, layers: [0]}]\n"
ATTRIBUTE = PATCH + "methods: [atp]\n"
SAE = (
    "model: tiny-llama\ndevice: cpu\ntraining_tokens: 1500\ncheckpoint_every: 0\n"
    "data: {{source: {{kind: text, paths: ['{corpus}']}}, context_size: 24, eval_rows: 4}}\n"
    "store: {{batch_size: 500, buffer_rows: 16, cache: false}}\nfeatures: {{enabled: false}}\n"
    "saes: [{{name: s, site: blocks.1.hook_resid_post, d_sae: 64, activation: {{kind: topk, k: 4}}}}]\n"
)


@pytest.fixture(autouse=True)
def no_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    """``interp app`` must refuse before it replaces the test process with a server."""

    def refuse(path: str, argv: list[str]) -> None:
        raise AssertionError(f"interp app went on to exec {argv}")

    monkeypatch.setattr(interp.app_cli.os, "execv", refuse)


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, str]:
    """The files the table's ``{name}`` placeholders name, written under ``tmp_path``."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n\n".join(f"Alice and Bob went to the garden, time {i}." for i in range(40)))
    texts = {
        "patch": ("patch.yaml", PATCH),
        "attribute": ("attribute.yaml", ATTRIBUTE),
        "sae": ("sae.yaml", SAE.format(corpus=corpus)),
        "bad_yaml": ("bad.yaml", "model: [unclosed\n"),
        "json": ("config.json", '{"model": "tiny-llama"}'),
        "list": ("list.yaml", "- model\n- sweeps\n"),
        "unknown_key": ("unknown.yaml", PATCH + "metrik: logit_diff\n"),
        "attribute_unknown_key": ("attribute_unknown.yaml", ATTRIBUTE + "ig: {stepz: 3}\n"),
        "sae_unknown_key": ("sae_unknown.yaml", SAE.format(corpus=corpus).replace("batch_size", "bach_size")),
        "unknown_sweep": ("sweep.yaml", PATCH.replace("resid_pre", "resid")),
        "attribute_unknown_sweep": ("attribute_sweep.yaml", ATTRIBUTE.replace("resid_pre", "resid")),
        "file": ("a-file", "not a directory\n"),
    }
    paths = {name: tmp_path / file for name, (file, _) in texts.items()}
    for name, (_, text) in texts.items():
        paths[name].write_text(text)
    return {**{name: str(path) for name, path in paths.items()},
            "missing": str(tmp_path / "missing.yaml"), "runs": str(tmp_path / "runs")}


ROWS = [
    # a config file that is not there, does not parse, or is not a mapping of settings
    ("missing config", "patch {missing}", 2, r"^error: config file .*missing\.yaml does not exist"),
    ("missing config", "attribute {missing}", 2, r"^error: config file .*missing\.yaml does not exist"),
    ("missing config", "sae train {missing}", 2, r"^error: config file .*missing\.yaml does not exist"),
    ("missing config", "sae check {missing}", 2, r"^error: config file .*missing\.yaml does not exist"),
    ("missing SAE directory", "sae info {missing}", 2, r"^error: .*missing\.yaml"),
    ("bad YAML", "patch {bad_yaml}", 2, r"^error: .*bad\.yaml does not parse"),
    ("bad YAML", "attribute {bad_yaml}", 2, r"^error: .*bad\.yaml does not parse"),
    ("bad YAML", "sae check {bad_yaml}", 2, r"^error: .*bad\.yaml does not parse"),
    ("wrong suffix", "patch {json}", 2, r"^error: .*\.yaml, \.yml or \.toml"),
    ("not a mapping", "patch {list}", 2, r"^error: .*list\.yaml must hold a mapping of settings"),
    # keys and values the config does not know
    ("unknown key", "patch {unknown_key}", 2, r"metrik: unknown key; did you mean 'metric'"),
    ("unknown key", "attribute {attribute_unknown_key}", 2, r"ig\.stepz: unknown key"),
    ("unknown key", "sae check {sae_unknown_key}", 2, r"store\.bach_size: unknown key"),
    ("unknown sweep", "patch {unknown_sweep}", 2, r"sweeps\.0\.sweep: unknown sweep 'resid'; choose one of"),
    ("unknown sweep", "attribute {attribute_unknown_sweep}", 2, r"unknown sweep 'resid'"),
    ("bad --dtype", "patch {patch} --dtype float8 --runs {runs}", 2, r"dtype: Input should be 'float32'"),
    # --set
    ("--set without =", "patch {patch} --set foo", 2, r"^error: override 'foo' is not KEY=VALUE"),
    ("--set without key", "patch {patch} --set =1", 2, r"^error: override '=1' is not KEY=VALUE"),
    ("--set without =", "attribute {attribute} --set foo", 2, r"^error: override 'foo' is not KEY=VALUE"),
    ("--set without =", "sae check {sae} --set foo", 2, r"^error: override 'foo' is not KEY=VALUE"),
    ("--set bad YAML", "patch {patch} --set sweeps.0.layers=[0", 2, r"^error: override .* does not parse as YAML"),
    ("--set unknown key", "patch {patch} --set nokey=1", 2, r"nokey: unknown key"),
    # --runs naming a file
    ("--runs is a file", "patch {patch} --runs {file}", 2, r"^error: --runs .*a-file is a file, not a runs store"),
    ("--runs is a file", "attribute {attribute} --runs {file}", 2, r"^error: --runs .*a-file is a file"),
    ("--runs is a file", "sae train {sae} --runs {file}", 2, r"^error: --runs .*a-file is a file"),
    ("--runs is a file", "runs --runs {file}", 2, r"^error: --runs .*a-file is a file"),
    ("--runs is a file", "app --runs {file} --headless", 2, r"^error: --runs .*a-file is a file"),
    # --resume of a run that is not there
    ("--resume missing id", "patch {patch} --runs {runs} --resume nope-123", 2, r"^error: no run 'nope-123'"),
    ("--resume missing id", "attribute {attribute} --runs {runs} --resume nope-123", 2, r"^error: no run 'nope-123'"),
    ("--resume missing id", "sae train {sae} --runs {runs} --resume nope-123", 2, r"^error: no run 'nope-123'"),
    ("--resume latest, none", "patch {patch} --runs {runs} --resume latest", 2, r"^error: no unfinished patching run"),
    # models
    ("unknown model", "sites no-such-model", 2, r"^error: 'no-such-model' is not a known model"),
    # what Typer refuses before a command runs
    ("unknown option", "patch {patch} --frobnicate", 2, r"No such option: --frobnicate"),
    ("unknown option", "attribute {attribute} --frobnicate", 2, r"No such option: --frobnicate"),
    ("unknown option", "sae train {sae} --frobnicate", 2, r"No such option: --frobnicate"),
    ("unknown option", "sae check {sae} --frobnicate", 2, r"No such option: --frobnicate"),
    ("unknown option", "sae info {runs} --frobnicate", 2, r"No such option: --frobnicate"),
    ("unknown option", "runs --frobnicate", 2, r"No such option: --frobnicate"),
    ("unknown option", "app --frobnicate", 2, r"No such option: --frobnicate"),
    ("unknown option", "sites --frobnicate", 2, r"No such option: --frobnicate"),
    ("unknown global option", "--frobnicate runs", 2, r"No such option: --frobnicate"),
    ("unknown command", "frob", 2, r"No such command 'frob'"),
    ("unknown command", "sae frob", 2, r"No such command 'frob'"),
    ("missing argument", "patch", 2, r"Missing argument 'config'"),
    ("not a number", "app --port notaport", 2, r"Invalid value for '--port'"),
]


@pytest.mark.parametrize(("what", "line", "code", "pattern"), ROWS, ids=[f"{row[0]}: {row[1]}" for row in ROWS])
def test_bad_invocation_is_one_line(what: str, line: str, code: int, pattern: str, inputs: dict[str, str]) -> None:
    result = CliRunner().invoke(app, line.format(**inputs).split())
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    stderr = result.stderr.strip()
    if pattern.startswith("^error:"):
        first = stderr.splitlines()[0] if stderr else ""
        assert re.search(pattern, first), stderr
    else:
        assert re.search(pattern, stderr), stderr
