"""Configs of ``interp steer CONFIG``: one file format per kind of steering run, told apart by ``kind:``.

* ``kind: vectors``: build vectors from a contrast set (:class:`VectorsConfig`), sweep their
  strength per layer on a set of prompts, and keep samples;
* ``kind: dac``: Dynamic Activation Composition (:class:`DACConfig`): per-step vectors of one or
  more properties, then generation with per-step intensities;
* ``kind: function_vectors``: function vectors of an in-context task
  (:class:`~interp.steering.fv_config.FunctionVectorConfig`): head effects, the vector, a layer sweep.

:data:`CONFIGS` maps each ``kind`` to its config class; :func:`load_steer_config` reads the file,
applies ``--set`` overrides and validates it against the class its ``kind`` names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from interp.config import (
    ConfigError,
    ConfigModel,
    Device,
    Dtype,
    apply_overrides,
    parse_overrides,
    read_mapping,
    validate,
)
from interp.steering.fv_config import FunctionVectorConfig


class RunModel(ConfigModel):
    """Settings every steering run shares: the model and where it runs."""

    model: str = "smollm2-135m"
    device: Device = "cpu"
    dtype: Dtype = "float32"


class ScoreConfig(ConfigModel):
    """The behaviour score: target words (log-probability of positive minus negative words), or none."""

    positive: list[str] = Field(default_factory=list, description="words whose probability is the behaviour")
    negative: list[str] = Field(default_factory=list, description="words whose probability counts against it")


class SweepConfig(ConfigModel):
    """The strength sweep of one method's vectors on a set of prompts."""

    method: str = "mean_diff"
    layers: list[int] | None = Field(None, description="layers to sweep (default: every extracted layer)")
    strengths: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0], min_length=1)
    unit: Literal["raw", "norm"] = "norm"
    scope: Literal["prompt", "generated", "all"] = "all"
    prompts: list[str] = Field(min_length=1)
    max_new_tokens: int = Field(20, ge=1)
    temperature: float = Field(0.0, ge=0)
    seed: int = 0


class VectorsConfig(RunModel):
    """Extract steering vectors from a contrast set and measure them in a strength sweep."""

    kind: Literal["vectors"] = "vectors"
    data: str = Field(description="JSONL contrast set: positive/negative texts, or prompt + positive/negative")
    pairs: int | None = Field(None, ge=1, description="use only the first N pairs")
    site: str = "resid_post"
    layers: list[int] | None = None
    methods: list[Literal["mean_diff", "single_pair", "pca_diff", "logistic"]] = Field(
        default_factory=lambda: ["mean_diff"], min_length=1
    )
    token: str | int = "last"
    pair_index: int = 0
    sweep: SweepConfig
    score: ScoreConfig = ScoreConfig()

    @model_validator(mode="after")
    def _swept_method_is_built(self) -> VectorsConfig:
        if self.sweep.method not in self.methods:
            raise ConfigError(f"sweep.method {self.sweep.method!r} is not among methods {self.methods}; add it there")
        return self


class PropertyConfig(ConfigModel):
    """One DAC property: a contrast set whose positives show the property and negatives do not."""

    name: str
    data: str = Field(description="JSONL contrast set: positive = prompt with the property, negative = without")
    pairs: int | None = Field(None, ge=1)
    steps: int = Field(30, ge=1, description="generation steps to read vectors for")
    site: str = "z"
    layers: list[int] | None = None


class DACConfig(RunModel):
    """Dynamic Activation Composition of one or more properties on zero-shot prompts."""

    kind: Literal["dac"] = "dac"
    properties: list[PropertyConfig] = Field(min_length=1)
    prompts: list[str] = Field(min_length=1)
    max_new_tokens: int = Field(30, ge=1)
    top_p: float = Field(0.5, gt=0, le=1)
    alpha_start: float = 2.0
    alpha_max: float = Field(2.0, ge=0)


CONFIGS: dict[str, type[ConfigModel]] = {
    "vectors": VectorsConfig,
    "dac": DACConfig,
    "function_vectors": FunctionVectorConfig,
}
"""``kind`` -> config class; a new kind of steering run adds one entry here and one runner."""


def load_steer_config(
    path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = (), device_on_workers: bool = False
) -> ConfigModel:
    """Read a steering config, apply overrides and validate it against the class its ``kind`` names.

    ``device_on_workers``: the run's workers check its device (see :func:`interp.config.validate`).
    """
    given = parse_overrides(overrides) if not isinstance(overrides, Mapping) else overrides
    raw = apply_overrides(read_mapping(path), given)
    kind = raw.get("kind")
    if kind not in CONFIGS:
        raise ConfigError(f"invalid config {path}:\n  kind: must be one of {sorted(CONFIGS)} (got {kind!r})")
    return validate(raw, CONFIGS[kind], str(path), device_on_workers)
