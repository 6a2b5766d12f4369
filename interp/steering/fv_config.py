"""The configuration of a function-vector run, validated before any work starts.

A config file (YAML or TOML, read by :func:`interp.config.load_config`) names the model, the
in-context task and the settings of :func:`~interp.steering.function_vectors.extract_function_vector`
and :func:`~interp.steering.function_vectors.evaluate_function_vector`. ``kind: function_vectors``
tells the steering command which kind of run the file describes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from interp.config import ConfigError, ConfigModel, Device, Dtype


class FunctionVectorConfig(ConfigModel):
    """A function-vector run: find the task's heads, build the FV, and sweep it over layers."""

    kind: Literal["function_vectors"] = "function_vectors"
    model: str = "smollm2-135m"
    device: Device = "cpu"
    dtype: Dtype = "float32"
    task: str = Field("antonyms", description="a shipped task name or a JSONL file of input/output pairs")
    n_shots: int = Field(10, ge=1, description="demonstrations per in-context prompt")
    n_mean_prompts: int = Field(100, ge=1, description="clean prompts for the mean head activations")
    n_effect_prompts: int = Field(25, ge=1, description="shuffled-label prompts the AIE averages over")
    n_top_heads: int = Field(10, ge=1, description="heads summed into the function vector")
    filter_correct: bool = Field(True, description="use only queries the model answers correctly in context")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="share of pairs held out for evaluation")
    seed: int = 42
    with_bias: bool = Field(False, description="add the out-projection bias once per head (reference form)")
    layers: list[int] | None = Field(None, description="layers to inject at (default: every layer)")
    scale: float = Field(1.0, description="multiplier of the function vector when injected")
    batch_size: int = Field(16, ge=1, description="prompts per forward")

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0 or len(set(value)) != len(value)):
            raise ConfigError(
                f"layers {value} must be distinct non-negative integers; leave layers out to sweep every layer"
            )
        return value
