"""The configuration of a patching sweep run, validated before any work starts.

A config file (YAML or TOML) names the model, the task, the metric, the direction and the sweeps.
Unknown keys and bad values are refused with the offending key named, because a typo in a sweep
config should never silently run the wrong experiment for an hour.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from interp.errors import InterpError
from interp.cells import SWEEPS

Schema = TypeVar("Schema", bound=BaseModel)


class ConfigError(InterpError, ValueError):
    """A config file that is missing, unreadable, or has a wrong key or value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Strict):
    """Which prompts: generated IOI, or clean/corrupt pairs from a JSONL file."""

    kind: Literal["ioi", "jsonl"] = "ioi"
    n: int = Field(32, ge=1, description="number of IOI prompt pairs")
    seed: int = 0
    corruption: Literal["abc", "symmetric", "noise"] = "abc"
    order: Literal["mixed", "BABA", "ABBA"] = "mixed"
    path: str | None = Field(None, description="JSONL file of pairs (kind: jsonl)")


class SweepConfig(_Strict):
    """One named sweep, optionally restricted to some layers / positions / heads / neurons."""

    sweep: str
    layers: list[int] | None = None
    positions: list[int] | None = None
    heads: list[int] | None = None
    neurons: list[int] | None = None

    @field_validator("sweep")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SWEEPS:
            raise ValueError(f"unknown sweep {value!r}; choose one of {sorted(SWEEPS)}")
        return value


class PatchConfig(_Strict):
    """A patching run: model, task, metric, direction, sweeps and execution settings."""

    model: str = "smollm2-135m"
    device: str = "cpu"
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = "float32"
    task: TaskConfig = TaskConfig()
    metric: Literal["logit_diff", "logprob", "prob"] = "logit_diff"
    direction: Literal["denoising", "noising"] = "denoising"
    sweeps: list[SweepConfig] = Field(min_length=1)
    shard_cells: int = Field(64, ge=1, description="cells per resumable shard")
    max_rows: int | None = Field(None, ge=1, description="rows per forward (default: from a memory budget)")
    prefix_reuse: bool = True
    skip_noop_rows: bool = True


def read_validated(
    path: str | Path, schema: type[Schema], overrides: dict[str, Any] | None = None, what: str = "config"
) -> Schema:
    """Read a YAML/TOML file, apply command-line overrides, and validate it against ``schema``;
    every problem is reported with the dotted key it concerns."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        raw = tomllib.loads(file.read_text()) if file.suffix == ".toml" else yaml.safe_load(file.read_text())
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{file} is not valid {'TOML' if file.suffix == '.toml' else 'YAML'}: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must hold a mapping of settings, got {type(raw).__name__}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"invalid {what} {file}: {problems}") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PatchConfig:
    """Read and validate a YAML/TOML patching config, applying command-line overrides."""
    return read_validated(path, PatchConfig, overrides)
