"""Running an attribution config into the results store: load, build the task, compare, record."""

from __future__ import annotations

from collections.abc import Callable

import torch

from interp.attribution.compare import compare
from interp.attribution.comparison import Comparison, record
from interp.attribution.config import AttributionConfig
from interp.models import load_model
from interp.patching.runner import DTYPES, build_task
from interp.runs import Run, RunStore


def stages(config: AttributionConfig) -> int:
    """Number of progress stages: one exact sweep per component type, one pass set per method."""
    return len(config.sweeps) + len(config.methods)


def run_attribution(
    config: AttributionConfig, store: RunStore, progress: Callable[[str], None] | None = None
) -> tuple[Run, Comparison]:
    """Execute ``config``: exact sweeps and every method, recorded as a run of kind ``"attribution"``."""
    torch.manual_seed(0)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    task = build_task(model, config.task)
    comparison = compare(
        model, task, config.requests(), config.methods, config.metric, config.direction, config.top_k,
        config.options(), progress=progress,
    )
    run = record(comparison, store, config.model_dump(), task)
    return run, comparison
