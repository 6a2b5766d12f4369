"""The configuration of a TCAV run (``interp tcav CONFIG``), validated before any work starts.

A YAML or TOML file names the model, the site kind and layers, the token selector, the concept
files, the pool of random text, the target prompts and metric, the classifier and the
significance settings; optional sections add the causal check (``steer``), the global CAV
(``gcav``) and NMF concepts (``nmf``). See ``data/tcav_demo.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from interp.config import ConfigError, ConfigModel, Device, Dtype
from interp.sites import BLOCK


class ConceptFile(ConfigModel):
    """One concept: a name and a JSONL file of ``{"text": ..., "mark": ...}`` lines."""

    name: str
    path: Path


class TargetConfig(ConfigModel):
    """Target prompts (JSONL of ``{"prompt", "answer", "wrong"}``) and the metric TCAV differentiates."""

    path: Path
    metric: Literal["logit", "logit_diff", "logprob"] = "logit_diff"


class SteerConfig(ConfigModel):
    """Add each concept's CAV at its layer at this strength (see :mod:`interp.concepts.causal`)."""

    enabled: bool = True
    strength: float = 4.0
    unit: Literal["raw", "norm"] = "norm"


class GCAVConfig(ConfigModel):
    """Align the per-layer CAVs into one global CAV per concept (see :mod:`interp.concepts.gcav`)."""

    enabled: bool = True
    dim: int = Field(64, ge=2)
    steps: int = Field(300, ge=1)
    fusion_steps: int = Field(200, ge=0)


class NMFConfig(ConfigModel):
    """NMF concepts of one layer's activations over the concept and random prompts (:mod:`interp.concepts.nmf`)."""

    enabled: bool = True
    layer: int = Field(0, ge=0)
    components: int = Field(8, ge=1)
    top: int = Field(5, ge=1)


class TCAVConfig(ConfigModel):
    """A TCAV run."""

    model: str = "smollm2-135m"
    device: Device = "cpu"
    dtype: Dtype = "float32"
    kind: str = "resid_post"
    layers: list[int] | None = None
    selector: Literal["last", "mean", "marked"] = "mean"
    concepts: list[ConceptFile] = Field(min_length=1)
    random: Path
    target: TargetConfig
    classifier: Literal["sgd", "logistic", "mean_diff"] = "sgd"
    design: Literal["disjoint", "shared"] = "disjoint"
    n_random: int = Field(10, ge=2)
    random_size: int | None = Field(None, ge=4)
    balance: Literal["truncate", "weight"] = "truncate"
    alpha: float = Field(0.01, gt=0)
    test_fraction: float = Field(0.33, gt=0, lt=1)
    n_permutations: int = Field(2000, ge=10)
    level: float = Field(0.05, gt=0, lt=1)
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    steer: SteerConfig | None = None
    gcav: GCAVConfig | None = None
    nmf: NMFConfig | None = None

    @field_validator("kind")
    @classmethod
    def _block_kind(cls, value: str) -> str:
        if value not in BLOCK:
            raise ConfigError(f"kind {value!r} is not a block site kind; use one of {', '.join(BLOCK)}")
        return value

    @field_validator("concepts")
    @classmethod
    def _distinct(cls, value: list[ConceptFile]) -> list[ConceptFile]:
        names = [c.name for c in value]
        if len(set(names)) != len(names) or "random" in names:
            raise ConfigError(f"concept names {names} must be distinct and not 'random'")
        return value
