"""Bad configs, table-driven: each file or override -> the error type and a message naming the fix.

Also the resource limits of reading a config: YAML aliases cannot expand a small file into a huge
one, and values echoed in messages are cut short.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import interp
import interp.tasks.config as task_config
from interp.attribution.config import AttributionConfig
from interp.cli import app
from interp.config import MAX_YAML_NODES, ConfigError, load_config
from interp.patching.config import PatchConfig
from interp.sae.config import TrainConfig
from interp.tasks.base import TaskError
from interp.tasks.ioi import MAX_IOI_N, ioi_task

PATCH = "model: tiny-llama\nsweeps: [{sweep: resid_pre}]\n"
SAE = "training_tokens: 8192\nsaes: [{name: a, site: blocks.1.hook_resid_post, d_sae: 64, activation: {kind: topk, k: 8}}]\n"


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: each level is nine aliases of the one below (9**levels strings)."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    previous = "a"
    for name in "bcdefghijklm"[: levels - 1]:
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


BAD_CONFIGS: list[tuple[str, type, str, list[str], type[Exception], str]] = [
    # (id, schema, file text, overrides, error type, message regex)
    ("alias_bomb", TrainConfig, SAE + billion_laughs(), [], ConfigError, rf"aliases \(\*name\) expand to more than {MAX_YAML_NODES:,} values"),
    ("alias_bomb_in_override", PatchConfig, PATCH, ["model=" + billion_laughs(6).replace("\n", ", ").join("{}")], ConfigError, r"override 'model': its YAML aliases"),
    ("alias_cycle", PatchConfig, PATCH + "x: &x [*x]\n", [], ConfigError, r"does not parse|cycle"),
    ("long_value_cut", PatchConfig, PATCH + "direction: " + "y" * 5000 + "\n", [], ConfigError, r"direction: Input should be 'denoising' or 'noising' \(got 'y{199}\.\.\. \(4,802 more characters\)\)$"),
    ("task_n_huge", PatchConfig, PATCH + "task: {n: 100000000}\n", [], ConfigError, rf"task\.n: above the maximum of {MAX_IOI_N:,} IOI prompt pairs.*use n <= {MAX_IOI_N} \(got 100000000\)"),
    ("task_n_huge_attribution", AttributionConfig, PATCH, ["task.n=10001"], ConfigError, r"task\.n: above the maximum of 10,000"),
    ("empty_layers", PatchConfig, PATCH.replace("{sweep: resid_pre}", "{sweep: resid_pre, layers: []}"), [], ConfigError, r"sweeps\.0\.layers: an empty layers list selects no cells; leave layers out"),
    ("empty_positions", AttributionConfig, PATCH, ["sweeps.0.positions=[]"], ConfigError, r"sweeps\.0\.positions: an empty positions list selects no cells"),
    ("named_positions_attribution", AttributionConfig, PATCH, ["sweeps.0.positions=named"], ConfigError, r"sweeps: sweep 0 \(resid_pre\) has positions 'named', named positions, which only exact patching .*set sweeps\.0\.positions to integers"),
    ("position_names_attribution", AttributionConfig, PATCH + "methods: [atp]\n", ["sweeps.0.positions=[S1, IO]"], ConfigError, r"sweep 0 \(resid_pre\) has positions \['S1', 'IO'\], named positions.*sweeps\.0\.positions"),
    ("empty_heads", PatchConfig, PATCH.replace("resid_pre", "head_z"), ["sweeps.0.heads=[]"], ConfigError, r"sweeps\.0\.heads: an empty heads list"),
    ("empty_neurons", PatchConfig, PATCH.replace("resid_pre", "neuron"), ["sweeps.0.neurons=[]"], ConfigError, r"sweeps\.0\.neurons: an empty neurons list"),
    ("device_gpu", PatchConfig, PATCH + "device: gpu\n", [], ConfigError, r"device: not a torch device \('gpu' is spelled 'cuda' in torch\); use one of cpu \(got 'gpu'\)"),
    ("device_cuda_without_gpu", PatchConfig, PATCH, ["device=cuda"], ConfigError, r"device: CUDA is not available: torch sees no CUDA GPU here; use one of cpu \(got 'cuda'\)"),
    ("device_cuda_1_attribution", AttributionConfig, PATCH + "device: cuda:1\n", [], ConfigError, r"device: CUDA is not available"),
    ("device_nonsense_sae", TrainConfig, SAE + "device: quantum\n", [], ConfigError, r"device: not a torch device; use one of auto, cpu \(got 'quantum'\)"),
    ("device_cuda_sae", TrainConfig, SAE + "device: cuda\n", [], ConfigError, r"device: CUDA is not available.*use one of auto, cpu"),
    ("long_override_target_cut", PatchConfig, PATCH.replace("tiny-llama", "m" * 3000), ["model.x=1"], ConfigError, r"model holds 'm{199}\.\.\. \(2,802 more characters\), not a mapping"),
]


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Device checks see the machine a user without a GPU has, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize(
    "schema, text, overrides, error, message",
    [row[1:] for row in BAD_CONFIGS],
    ids=[row[0] for row in BAD_CONFIGS],
)
def test_bad_configs_are_refused_with_a_short_message(
    tmp_path: Path, schema: type, text: str, overrides: list[str], error: type[Exception], message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(error, match=message) as raised:
        load_config(path, schema, overrides)
    assert len(str(raised.value)) < 1200


def test_the_alias_bomb_is_refused_fast_and_small(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(SAE + billion_laughs(9))
    assert path.stat().st_size < 1024
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError, match="aliases"):
            load_config(path, TrainConfig)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 0.5 and peak < 5_000_000


def test_aliases_within_the_bound_and_large_plain_files_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("model: tiny-llama\nsweeps: [&s {sweep: head_z, layers: [0, 1]}, {<<: *s, sweep: attn_out}]\n")
    config = load_config(path, PatchConfig)
    assert [s.sweep for s in config.sweeps] == ["head_z", "attn_out"] and config.sweeps[1].layers == [0, 1]
    many = ", ".join(str(i % 7) for i in range(3 * MAX_YAML_NODES))  # no aliases: as large as the file itself
    path.write_text(f"model: tiny-llama\nsweeps: [{{sweep: resid_pre, positions: [{many}]}}]\n")
    assert len(load_config(path, AttributionConfig).sweeps[0].positions) == 3 * MAX_YAML_NODES


def test_devices_this_machine_has_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(SAE)
    assert load_config(path, TrainConfig).device == "auto" and load_config(path, TrainConfig, ["device=cpu"]).device == "cpu"
    path.write_text(PATCH)
    assert load_config(path, PatchConfig, ["device=cpu"]).device == "cpu"


@pytest.mark.parametrize(
    "command, text, message",
    [
        (["patch"], PATCH + "device: cuda\n", "device: CUDA is not available"),
        (["patch"], PATCH.replace("{sweep: resid_pre}", "{sweep: resid_pre, layers: []}"), "an empty layers list"),
        (["attribute"], PATCH + "task: {n: 100000000}\n", "task.n: above the maximum"),
        (["attribute"], PATCH.replace("tiny-llama", "no-such-model").replace("{sweep: resid_pre}", "{sweep: resid_pre, positions: named}"),
         "set sweeps.0.positions to integers"),
        (["sae", "train"], SAE + "device: gpu\n", "device: not a torch device"),
    ],
    ids=["patch_device", "patch_empty_layers", "attribute_task_n", "attribute_named_positions", "sae_device"],
)
def test_configs_that_cannot_run_leave_no_run_directory(tmp_path: Path, command: list[str], text: str, message: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, [*command, str(config), "--runs", str(runs)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not runs.exists() or not any(runs.iterdir())


def test_ioi_task_refuses_more_than_the_maximum_and_reports_progress(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    model = interp.load_model("tiny-llama")
    with pytest.raises(TaskError, match=rf"n \(10,001\) is above the maximum of {MAX_IOI_N:,}"):
        ioi_task(model, n=MAX_IOI_N + 1)
    monkeypatch.setattr(task_config, "PROGRESS_FROM", 4)
    task = task_config.build_task(model, task_config.TaskConfig(n=4))
    assert len(task.clean_prompts) == 4
    assert "building IOI prompts: 4/4" in capsys.readouterr().err
    task_config.build_task(model, task_config.TaskConfig(n=3))
    assert capsys.readouterr().err == ""  # small tasks build quietly
