"""interp.config: one loader for every config family, dotted overrides, errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from interp.attribution.config import AttributionConfig
from interp.config import ConfigError, apply_overrides, load_config, parse_overrides, validate
from interp.patching.config import PatchConfig
from interp.sae.config import TrainConfig
from interp.tasks.config import TaskConfig

DATA = Path(__file__).resolve().parents[1] / "data"
PATCH = {"model": "tiny-llama", "sweeps": [{"sweep": "resid_pre"}, {"sweep": "head_z"}]}


def _write(tmp_path: Path, raw: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "name, schema",
    [("ioi_resid.yaml", PatchConfig), ("ioi_attribution.yaml", AttributionConfig), ("sae_topk.yaml", TrainConfig)],
)
def test_every_family_loads_through_the_one_loader(name: str, schema: type) -> None:
    assert isinstance(load_config(DATA / name, schema), schema)


def test_overrides_set_dotted_keys_and_list_items(tmp_path: Path) -> None:
    path = _write(tmp_path, PATCH)
    config = load_config(path, PatchConfig, ["sweeps.0.layers=[0,1]", "task.n=3", "device=cpu", "prefix_reuse=false"])
    assert config.sweeps[0].layers == [0, 1] and config.sweeps[1].layers is None
    assert config.task.n == 3 and config.device == "cpu" and config.prefix_reuse is False
    assert load_config(path, PatchConfig, {"dtype": "float64"}).dtype == "float64"
    raw = {"a": [{"b": 1}]}
    assert apply_overrides(raw, {"a.0.b": 2, "c.d": "x"}) == {"a": [{"b": 2}], "c": {"d": "x"}}
    assert raw == {"a": [{"b": 1}]}  # the input is left alone


@pytest.mark.parametrize(
    "items, message",
    [
        (["sweeps"], "override 'sweeps' is not KEY=VALUE"),
        (["sweeps.5.layers=[0]"], "sweeps.5 indexes a list of 2 item(s); use 0..1"),
        (["model.name=x"], "model holds 'tiny-llama', not a mapping or list"),
    ],
)
def test_bad_overrides_say_what_is_wrong(tmp_path: Path, items: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, PATCH), PatchConfig, items)
    assert message in str(error.value)


def test_errors_name_the_path_the_value_and_what_is_allowed(tmp_path: Path) -> None:
    raw = {**PATCH, "direction": "sideways", "sweeps": [{"sweep": "resid_pre", "layerz": [0]}], "task": {"n": 0}}
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, raw), PatchConfig)
    message = str(error.value)
    assert message.startswith(f"invalid config {tmp_path / 'config.yaml'}:")
    assert "direction: Input should be 'denoising' or 'noising' (got 'sideways')" in message
    assert "sweeps.0.layerz: unknown key; did you mean 'layers'? (allowed: heads, layers, neurons, positions, sweep)" in message
    assert "task.n: Input should be greater than or equal to 1 (got 0)" in message
    with pytest.raises(ConfigError, match=r"sweeps\.0\.sweep: unknown sweep 'resid'; choose one of \["):
        validate({"sweeps": [{"sweep": "resid"}]}, PatchConfig)
    with pytest.raises(ConfigError, match="task: kind is 'jsonl' but path is not set; give the JSONL file"):
        validate({**PATCH, "task": {"kind": "jsonl"}}, PatchConfig)
    assert validate({"kind": "jsonl", "path": "pairs.jsonl"}, TaskConfig).path == "pairs.jsonl"


def test_files_must_exist_parse_and_be_yaml_or_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", PatchConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweeps: [unclosed")
    with pytest.raises(ConfigError, match="does not parse"):
        load_config(bad, PatchConfig)
    with pytest.raises(ConfigError, match="use a .yaml, .yml or .toml file"):
        load_config(bad.rename(tmp_path / "bad.json"), PatchConfig)
    listed = _write(tmp_path, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listed, PatchConfig)
    toml = tmp_path / "c.toml"
    toml.write_text('model = "tiny-llama"\n[[sweeps]]\nsweep = "mlp_out"\n')
    assert load_config(toml, PatchConfig).sweeps[0].sweep == "mlp_out"


def test_configs_are_immutable() -> None:
    config = validate(PATCH, PatchConfig)
    with pytest.raises(ValueError):
        config.model = "other"  # type: ignore[misc]


def test_overrides_parse_values_as_yaml() -> None:
    assert parse_overrides(["a=[0, 1]", "b=3", "c=cuda", "d=", "e=x=y"]) == {
        "a": [0, 1], "b": 3, "c": "cuda", "d": None, "e": "x=y"
    }
