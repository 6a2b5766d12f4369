"""Bad configs, table-driven: each file or override -> the error type and a message naming the fix.

Also the resource limits of reading a config: YAML aliases cannot expand a small file into a huge
one, and values echoed in messages are cut short.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from interp.attribution.config import AttributionConfig
from interp.config import MAX_YAML_NODES, ConfigError, load_config
from interp.patching.config import PatchConfig
from interp.sae.config import TrainConfig

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
    ("long_override_target_cut", PatchConfig, PATCH.replace("tiny-llama", "m" * 3000), ["model.x=1"], ConfigError, r"model holds 'm{199}\.\.\. \(2,802 more characters\), not a mapping"),
]


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
