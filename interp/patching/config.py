"""The configuration of a patching sweep run (``interp patch CONFIG``), validated before any work starts.

A config file (YAML or TOML, read by :func:`interp.config.load_config`) names the model, the task,
the metric, the direction and the sweeps, plus execution settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from interp.config import ConfigError, ConfigModel
from interp.patching.cells import SWEEPS
from interp.tasks.config import TaskConfig

Dtype = Literal["float32", "float64", "bfloat16", "float16"]


class SweepConfig(ConfigModel):
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
            raise ConfigError(f"unknown sweep {value!r}; choose one of {sorted(SWEEPS)}")
        return value


class PatchConfig(ConfigModel):
    """A patching run: model, task, metric, direction, sweeps and execution settings."""

    model: str = "smollm2-135m"
    device: str = "cpu"
    dtype: Dtype = "float32"
    task: TaskConfig = TaskConfig()
    metric: Literal["logit_diff", "logprob", "prob"] = "logit_diff"
    direction: Literal["denoising", "noising"] = "denoising"
    sweeps: list[SweepConfig] = Field(min_length=1)
    shard_cells: int = Field(64, ge=1, description="cells per resumable shard")
    max_rows: int | None = Field(None, ge=1, description="rows per forward (default: from a memory budget)")
    prefix_reuse: bool = True
    skip_noop_rows: bool = True
