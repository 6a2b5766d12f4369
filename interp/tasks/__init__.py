"""Prompt datasets and metrics for patching: IOI, clean/corrupt pairs from JSONL, logit difference.

    >>> task = ioi_task(model, n=32, corruption="abc")       # PatchingTask
    >>> values = get_metric("logit_diff")(logits[:, -1], task)
    >>> normalise(values, clean_values, corrupt_values)       # clean = 1, corrupt = 0

A :class:`PatchingTask` holds aligned clean/corrupt token batches, the answer and wrong token of
each example, and any corruption applied as interventions; the patching engine reads only that.
"""

from interp.tasks.base import PatchingTask, TaskError, position_labels
from interp.tasks.config import TaskConfig, build_task
from interp.tasks.direction import DIRECTIONS, Direction, check_direction, roles, run_spec
from interp.tasks.ioi import IOIVocabulary, embedding_std, ioi_task, ioi_vocabulary
from interp.tasks.metrics import (
    METRICS,
    NormalisationError,
    TaskMetric,
    UnknownMetricError,
    get_metric,
    normalise,
    resolve_metric,
)
from interp.tasks.pairs import pairs_from_jsonl

__all__ = [
    "DIRECTIONS",
    "Direction",
    "IOIVocabulary",
    "METRICS",
    "NormalisationError",
    "PatchingTask",
    "TaskConfig",
    "TaskError",
    "TaskMetric",
    "UnknownMetricError",
    "build_task",
    "check_direction",
    "embedding_std",
    "get_metric",
    "ioi_task",
    "ioi_vocabulary",
    "normalise",
    "pairs_from_jsonl",
    "position_labels",
    "resolve_metric",
    "roles",
    "run_spec",
]
