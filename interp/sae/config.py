"""The training config: one YAML or TOML file saying what to train on what, validated by pydantic.

::

    model: smollm2-135m
    training_tokens: 1_000_000
    data: {source: {kind: demo}, context_size: 128, eval_rows: 32}
    store: {batch_size: 4096, cache: true}
    optim: {warmup_steps: 20}
    saes:
      - {name: topk, site: blocks.15.hook_resid_post, d_sae: 4096, activation: {kind: topk, k: 32}}

Every section is a :class:`interp.config.ConfigModel`, read by :func:`interp.config.load_config`,
so a typo is an error that names its path (``saes.0.activation.topk.k: Input should be greater
than 0 (got -3)``, ``store.bach_size: unknown key; did you mean 'batch_size'?``). Several ``saes`` train in one pass
over the data (:mod:`interp.sae.trainer`). ``data/sae_topk.yaml`` and ``data/sae_topafa.yaml`` are
worked examples.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from interp.config import ConfigError, ConfigModel, check_device
from interp.sae.activations import ActivationConfig, k_too_large
from interp.sae.tokens import DemoSource, TokenSource
from interp.sae.trainer import OptimConfig

class DataConfig(ConfigModel):
    """Where tokens come from and which positions train the SAEs."""

    source: TokenSource = Field(default_factory=DemoSource)
    context_size: int = Field(128, gt=1)
    prepend_bos: bool = False
    max_rows: int | None = Field(None, gt=1, description="use only the first rows of the packed source")
    eval_rows: int = Field(32, ge=1, description="rows held out for metrics and feature statistics")
    split_seed: int = 0
    exclude_special_tokens: bool = True
    skip_first_positions: int = Field(2, ge=0, description="positions at the start of each row never used (attention sinks)")


class StoreConfig(ConfigModel):
    """How activations are produced, shuffled and cached."""

    batch_size: int = Field(4096, gt=0, description="tokens per training step")
    buffer_rows: int = Field(256, gt=0, description="rows shuffled together")
    model_batch_size: int = Field(16, gt=0, description="rows per model forward")
    cache: bool = True
    cache_dir: str | None = None
    cache_dtype: Literal["float16", "float32"] = "float16"


class SAESpec(ConfigModel):
    """One SAE to train."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
    site: str
    d_sae: int = Field(gt=0)
    activation: ActivationConfig
    normalize_activations: Literal["none", "layer_norm"] = "none"
    seed: int = 0

    @model_validator(mode="after")
    def _k_fits(self) -> SAESpec:
        problem = k_too_large(self.activation, self.d_sae)
        if problem:
            raise ConfigError(problem)
        return self


class FeaturesConfig(ConfigModel):
    """Feature statistics computed on the held-out rows after training."""

    enabled: bool = True
    top_k: int = Field(20, gt=0)
    context: int = Field(8, ge=0)
    n_logits: int = Field(10, gt=0)
    intervals: int = Field(5, ge=0, description="equal intervals of (0, max] to sample examples from (0: none)")
    per_interval: int = Field(5, gt=0, description="examples sampled from each interval")


class TrainConfig(ConfigModel):
    """A whole SAE training job."""

    model: str = "smollm2-135m"
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    model_dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="dtype the language model runs in")
    training_tokens: int = Field(gt=0)
    checkpoint_every: int = Field(50, ge=0, description="steps between checkpoints (0: only at the end)")
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    saes: list[SAESpec] = Field(min_length=1)

    @field_validator("device")
    @classmethod
    def _usable_device(cls, value: str) -> str:
        return check_device(value, allow_auto=True)

    @field_validator("saes")
    @classmethod
    def _unique_names(cls, saes: list[SAESpec]) -> list[SAESpec]:
        names = [s.name for s in saes]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"SAE names must be unique; repeated: {duplicated}")
        return saes

    @model_validator(mode="after")
    def _enough_tokens(self) -> TrainConfig:
        if self.training_tokens < self.store.batch_size:
            raise ConfigError(f"training_tokens ({self.training_tokens}) is less than one batch ({self.store.batch_size})")
        return self

    @property
    def total_steps(self) -> int:
        return self.training_tokens // self.store.batch_size

    def to_json(self) -> dict[str, Any]:
        """The config as plain JSON values (what the run's manifest stores and resume compares)."""
        return json.loads(self.model_dump_json())

