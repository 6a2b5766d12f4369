"""The configuration of an attribution-vs-exact run (``interp attribute CONFIG``), validated up front.

A YAML or TOML file (read by :func:`interp.config.load_config`) names the model, the task, the metric and direction, the component types
(sweeps, with optional layer/position/head/neuron subsets), the methods to compare, and the RelP
and IG settings. Unknown keys and bad values are refused with the offending key named, and so are
sweeps by named position (``positions: named`` or a list of names), which only exact patching
takes: refused when the config is read, not after the exact sweeps have run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from interp.attribution.compare import METHODS, MethodOptions
from interp.attribution.relp import RelPRules
from interp.cells import SweepRequest, position_names_asked
from interp.config import ConfigError, ConfigModel, Device, Dtype
from interp.tasks.config import TaskConfig


class RelPConfig(ConfigModel):
    """RelP's rules (see :class:`interp.attribution.relp.RelPRules`)."""

    norm: bool = True
    activation: bool = True
    gated_product: bool = True
    attention: Literal["gradient", "cp", "attnlrp"] = "gradient"


class IGConfig(ConfigModel):
    """Integrated gradients' settings (see :func:`interp.attribution.ig.integrated_gradients`)."""

    steps: int = Field(10, ge=1)
    path: Literal["inputs", "activations"] = "inputs"
    rule: Literal["midpoint", "left"] = "midpoint"


class AttributionConfig(ConfigModel):
    """An attribution comparison run."""

    model: str = "smollm2-135m"
    device: Device = "cpu"
    dtype: Dtype = "float32"
    task: TaskConfig = TaskConfig()
    metric: Literal["logit_diff", "logprob", "prob"] = "logit_diff"
    direction: Literal["denoising", "noising"] = "denoising"
    methods: list[str] = Field(default_factory=lambda: ["atp", "atp*", "relp", "ig"], min_length=1)
    sweeps: list[SweepRequest] = Field(min_length=1)
    top_k: int = Field(10, ge=1)
    shard_cells: int = Field(64, ge=1, description="cells per resumable shard of an exact sweep")
    relp: RelPConfig = RelPConfig()
    ig: IGConfig = IGConfig()

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown methods {unknown}; choose from {list(METHODS)}")
        return value

    @field_validator("sweeps")
    @classmethod
    def _unique_sweeps(cls, value: list[SweepRequest]) -> list[SweepRequest]:
        names = [s.sweep for s in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"sweeps {repeated} appear more than once; merge their layers/positions")
        return value

    @field_validator("sweeps")
    @classmethod
    def _raw_positions(cls, value: list[SweepRequest]) -> list[SweepRequest]:
        for index, request in enumerate(value):
            if position_names_asked(request.positions):
                raise ConfigError(
                    f"sweep {index} ({request.sweep}) has positions {request.positions!r}, named positions, which only "
                    f"exact patching (`interp patch`) sweeps; the attribution methods estimate raw positions, so set "
                    f"sweeps.{index}.positions to integers (e.g. [-3, -2, -1], counted from the end) or leave it out "
                    "for every position"
                )
        return value

    def options(self) -> MethodOptions:
        return MethodOptions(
            relp_rules=RelPRules(**self.relp.model_dump()),
            ig_steps=self.ig.steps,
            ig_path=self.ig.path,
            ig_rule=self.ig.rule,
        )

