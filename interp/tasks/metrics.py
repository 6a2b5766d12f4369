"""Patching metrics: one number per example from the logits at the last position.

A patching metric says how much of the behaviour a run shows. All of these read only the final
position's logits (the patching engine computes no others) and return one value per example, so
means, standard errors and per-example plots are all available downstream:

* ``logit_diff``: ``logit[answer] - logit[wrong]``, the standard IOI metric (Wang et al. 2022). It
  is linear in the final residual stream and invariant to anything that shifts all logits alike,
  which makes it the usual choice for circuit work;
* ``logprob``: ``log_softmax(logits)[answer]``, the log-probability of the answer;
* ``prob``: ``softmax(logits)[answer]``, saturating and easy to read, but insensitive near 0 and 1.

Half-precision logits are upcast to float32 first (a float64 run stays float64).

:func:`normalise` maps metric values onto the scale "clean = 1, corrupt = 0",
``(m - m_corrupt) / (m_clean - m_corrupt)`` (docs/methods.md, Directions and metrics). By default the baselines are the
*batch means* of the clean and corrupt values, as in the IOI literature and as
:meth:`interp.patching.PatchingResult.normalized` does: every example is put on one shared scale,
so the mean of the normalised values is the normalised mean, and an example the model barely
distinguishes does not divide by a near-zero gap of its own. ``per_example=True`` uses each
example's own baselines instead. A gap of (nearly) zero is an error, never an ``inf``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float

from interp.errors import InterpError, InvalidArgumentError
from interp.tasks.base import PatchingTask

TaskMetric = Callable[[Float[torch.Tensor, "example vocab"], PatchingTask], Float[torch.Tensor, " example"]]


class NormalisationError(InterpError, ValueError):
    """Clean and corrupt baselines too close to normalise by their difference."""


class UnknownMetricError(InterpError, KeyError):
    """A metric name that is not in :data:`METRICS`."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _ids(ids: torch.Tensor, logits: torch.Tensor, task: PatchingTask) -> torch.Tensor:
    if logits.ndim != 2 or logits.shape[0] != len(task):
        raise InvalidArgumentError(
            f"a metric takes final-position logits of shape (example={len(task)}, vocab), got {tuple(logits.shape)}"
        )
    return ids.to(logits.device).unsqueeze(-1)


def logit_diff(
    final_logits: Float[torch.Tensor, "example vocab"], task: PatchingTask
) -> Float[torch.Tensor, " example"]:
    """``logit[answer] - logit[wrong]`` per example."""
    logits = _upcast(final_logits)
    answer = logits.gather(-1, _ids(task.answers, logits, task)).squeeze(-1)
    wrong = logits.gather(-1, _ids(task.wrong, logits, task)).squeeze(-1)
    return answer - wrong


def logprob(final_logits: Float[torch.Tensor, "example vocab"], task: PatchingTask) -> Float[torch.Tensor, " example"]:
    """``log_softmax(logits)[answer]`` per example."""
    logits = _upcast(final_logits)
    return logits.log_softmax(dim=-1).gather(-1, _ids(task.answers, logits, task)).squeeze(-1)


def prob(final_logits: Float[torch.Tensor, "example vocab"], task: PatchingTask) -> Float[torch.Tensor, " example"]:
    """``softmax(logits)[answer]`` per example."""
    return logprob(final_logits, task).exp()


METRICS: dict[str, TaskMetric] = {"logit_diff": logit_diff, "logprob": logprob, "prob": prob}


def get_metric(name: str) -> TaskMetric:
    """The metric called ``name`` (one of :data:`METRICS`)."""
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownMetricError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}") from None


def resolve_metric(metric: str | TaskMetric) -> tuple[str, TaskMetric]:
    """(name, function) of a metric given by name (one of :data:`METRICS`) or as a function."""
    if isinstance(metric, str):
        return metric, get_metric(metric)
    return getattr(metric, "__name__", "custom"), metric


def normalise(
    values: Float[torch.Tensor, "..."],
    clean_values: Float[torch.Tensor, " example"],
    corrupt_values: Float[torch.Tensor, " example"],
    per_example: bool = False,
    eps: float = 1e-6,
) -> Float[torch.Tensor, "..."]:
    """``(values - corrupt) / (clean - corrupt)``: 1 where clean behaviour is restored, 0 where corrupt.

    Args:
        values: metric values to normalise. With batch-mean baselines any shape works (e.g. a
            mean over examples); with ``per_example`` the first axis is the example axis.
        clean_values, corrupt_values: the metric on the unpatched clean and corrupt runs.
        per_example: use each example's own baselines instead of the batch means.
        eps: a gap smaller than ``eps * max(1, |clean|, |corrupt|)`` raises :class:`NormalisationError`.
    """
    clean, corrupt = clean_values.to(values.device), corrupt_values.to(values.device)
    if not per_example:
        clean, corrupt = clean.mean(), corrupt.mean()
    elif values.ndim == 0 or values.shape[0] != clean.shape[0]:
        raise NormalisationError(
            f"per-example normalisation needs values with a leading example axis of {clean.shape[0]}, "
            f"got shape {tuple(values.shape)}"
        )
    gap = clean - corrupt
    scale = torch.maximum(clean.abs(), corrupt.abs()).clamp(min=1.0)
    degenerate = gap.abs() < eps * scale
    if bool(degenerate.any()):
        where = "the batch means" if not per_example else f"examples {degenerate.nonzero().flatten().tolist()}"
        raise NormalisationError(
            f"clean and corrupt metric are equal for {where} (gap below {eps:g} relative): the corruption does not "
            "change the behaviour there, so normalised values are undefined; use the raw values"
            + ("" if not per_example else " or batch-mean baselines (per_example=False)")
        )
    if per_example:
        shape = (-1,) + (1,) * (values.ndim - 1)
        clean, corrupt, gap = clean.view(shape), corrupt.view(shape), gap.view(shape)
    return (values - corrupt) / gap
