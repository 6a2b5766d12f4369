"""Which prompts a run uses, as a config section, and the task it builds.

Patching, attribution and any later method that runs on clean/corrupt pairs take a ``task:``
section: generated IOI prompts, or pairs from a JSONL file.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from interp.config import ConfigError, ConfigModel
from interp.model import Model
from interp.tasks.base import PatchingTask
from interp.tasks.ioi import MAX_IOI_N, ioi_task
from interp.tasks.pairs import pairs_from_jsonl


class TaskConfig(ConfigModel):
    """Which prompts: generated IOI, or clean/corrupt pairs from a JSONL file."""

    kind: Literal["ioi", "jsonl"] = "ioi"
    n: int = Field(32, ge=1, description=f"number of IOI prompt pairs (at most {MAX_IOI_N:,})")
    seed: int = 0
    corruption: Literal["abc", "symmetric", "noise"] = "abc"
    order: Literal["mixed", "BABA", "ABBA"] = "mixed"
    templates: list[int] | None = Field(
        None, description="IOI template indices to draw from (default: all); one template aligns raw positions"
    )
    path: str | None = Field(None, description="JSONL file of pairs (kind: jsonl)")

    @model_validator(mode="after")
    def _path_for_jsonl(self) -> TaskConfig:
        if self.kind == "jsonl" and self.path is None:
            raise ConfigError("kind is 'jsonl' but path is not set; give the JSONL file of pairs as task.path")
        return self

    @field_validator("n")
    @classmethod
    def _at_most_max(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("kind", "ioi") == "ioi" and value > MAX_IOI_N:
            raise ConfigError(
                f"above the maximum of {MAX_IOI_N:,} IOI prompt pairs (building takes ~1 ms a pair and every "
                f"patching cell runs over all of them); use n <= {MAX_IOI_N}"
            )
        return value


PROGRESS_FROM = 2_000  # IOI tasks at least this large report their building on stderr
PROGRESS_EVERY_S = 2.0


def _stderr_progress(label: str) -> Callable[[int, int], None]:
    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        if done == total or time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            print(f"{label}: {done:,}/{total:,}", file=sys.stderr, flush=True)

    return report


def build_task(model: Model, config: TaskConfig) -> PatchingTask:
    """The task ``config`` describes, tokenised for ``model``."""
    if config.kind == "jsonl":
        assert config.path is not None  # checked by the validator
        return pairs_from_jsonl(model, config.path)
    progress = _stderr_progress("building IOI prompts") if config.n >= PROGRESS_FROM else None
    return ioi_task(
        model, n=config.n, seed=config.seed, corruption=config.corruption, order=config.order, progress=progress,
        templates=config.templates,
    )
