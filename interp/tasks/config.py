"""Which prompts a run uses, as a config section, and the task it builds.

Patching, attribution and any later method that runs on clean/corrupt pairs take a ``task:``
section: generated IOI prompts, or pairs from a JSONL file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interp.config import ConfigError, ConfigModel
from interp.model import Model
from interp.tasks.base import PatchingTask
from interp.tasks.ioi import ioi_task
from interp.tasks.pairs import pairs_from_jsonl


class TaskConfig(ConfigModel):
    """Which prompts: generated IOI, or clean/corrupt pairs from a JSONL file."""

    kind: Literal["ioi", "jsonl"] = "ioi"
    n: int = Field(32, ge=1, description="number of IOI prompt pairs")
    seed: int = 0
    corruption: Literal["abc", "symmetric", "noise"] = "abc"
    order: Literal["mixed", "BABA", "ABBA"] = "mixed"
    path: str | None = Field(None, description="JSONL file of pairs (kind: jsonl)")

    @model_validator(mode="after")
    def _path_for_jsonl(self) -> TaskConfig:
        if self.kind == "jsonl" and self.path is None:
            raise ConfigError("kind is 'jsonl' but path is not set; give the JSONL file of pairs as task.path")
        return self


def build_task(model: Model, config: TaskConfig) -> PatchingTask:
    """The task ``config`` describes, tokenised for ``model``."""
    if config.kind == "jsonl":
        assert config.path is not None  # checked by the validator
        return pairs_from_jsonl(model, config.path)
    return ioi_task(model, n=config.n, seed=config.seed, corruption=config.corruption, order=config.order)
