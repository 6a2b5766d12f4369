"""The configuration of a patching sweep run (``interp patch CONFIG``), validated before any work starts.

A config file (YAML or TOML, read by :func:`interp.config.load_config`) names the model, the task,
the metric, the direction and the sweeps, plus execution settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.cells import SweepRequest
from interp.config import ConfigModel, Device, Dtype
from interp.tasks.config import TaskConfig


class PatchConfig(ConfigModel):
    """A patching run: model, task, metric, direction, sweeps and execution settings."""

    model: str = "smollm2-135m"
    device: Device = "cpu"
    dtype: Dtype = "float32"
    task: TaskConfig = TaskConfig()
    metric: Literal["logit_diff", "logprob", "prob"] = "logit_diff"
    direction: Literal["denoising", "noising"] = "denoising"
    sweeps: list[SweepRequest] = Field(min_length=1)
    shard_cells: int = Field(64, ge=1, description="cells per resumable shard")
    max_rows: int | None = Field(None, ge=1, description="rows per forward (default: from a memory budget)")
    prefix_reuse: bool = True
    skip_noop_rows: bool = True
