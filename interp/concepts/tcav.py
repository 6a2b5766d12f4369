"""TCAV: does moving an activation along a concept's direction change the model's output?

For a target example ``x`` with pooled activation ``h_l(x)`` at layer ``l`` and a scalar metric
``m`` of the output (an answer token's logit, a logit difference, a task metric), the *conceptual
sensitivity* is the directional derivative of ``m`` along the unit CAV ``v``::

    S(x) = d/de m(h_l(x) + e v) |_{e=0} = grad_{h_l} m(x) . v

**Sign convention.** ``S(x) > 0`` means that moving the activation *toward the concept* raises the
metric. (The reference TCAV code differentiates a loss and counts ``grad . cav < 0``; that is the
same condition for the logit of the target class.) The TCAV score is the fraction of target
examples with ``S > 0`` (``sign_count``); ``magnitude`` is the plain mean of ``S`` (as captum
computes it), in metric units per unit of activation length.

**Pooled positions.** The activation a CAV lives in is pooled over a token range (the selector's,
:mod:`interp.concepts.selection`). Moving a *mean* over a range by ``e v`` means adding ``e v`` at
every token of the range, so the derivative is the gradient **summed** over the range (for the
``last`` and ``marked`` selectors the range is one token). The finite-difference check in the
tests adds ``e v`` at exactly those tokens.

**Cost.** Gradients do not depend on the CAV: one forward and one backward per batch of target
prompts gives the pooled gradient at every layer (:func:`sensitivities`), and every CAV, concept
or random, is then scored by a dot product. Testing a concept against many random concepts costs
no further model passes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.concepts.reading import layer_sites
from interp.concepts.selection import LAST_TOKEN, TokenSelector, range_mask
from interp.errors import InterpError, InvalidArgumentError
from interp.model import Model
from interp.tasks import PatchingTask, get_metric
from interp.vectors import LayerVectors

# metric(final_logits of a batch, row indices of the batch's examples) -> one value per example
Metric = Callable[[Float[Tensor, "batch vocab"], Int[Tensor, " batch"]], Float[Tensor, " batch"]]
TargetMetric = Literal["logit", "logit_diff", "logprob"]


@dataclass(frozen=True)
class Target:
    """Target prompts and the scalar metric of their last-position logits that TCAV differentiates.

    ``metric``: ``logit`` (the answer token's logit), ``logit_diff`` (answer minus wrong) or
    ``logprob`` (the answer's log-probability); or any function ``(final_logits, rows) -> values``.
    """

    prompts: tuple[str, ...]
    answers: Int[Tensor, " n"]
    wrong: Int[Tensor, " n"] | None = None
    metric: TargetMetric | Metric = "logit_diff"
    marks: tuple[str | None, ...] | None = None
    name: str = "target"

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))
        n = len(self.prompts)
        if n == 0:
            raise InvalidArgumentError("a TCAV target needs at least one prompt")
        if self.answers.shape != (n,):
            raise InvalidArgumentError(f"answers must have one token id per prompt ({n}); got shape {tuple(self.answers.shape)}")
        if self.metric == "logit_diff" and (self.wrong is None or self.wrong.shape != (n,)):
            raise InvalidArgumentError("metric 'logit_diff' needs one wrong-token id per prompt; give wrong= or use 'logit'")
        if isinstance(self.metric, str) and self.metric not in ("logit", "logit_diff", "logprob"):
            raise InvalidArgumentError(f"metric {self.metric!r} is unknown; use 'logit', 'logit_diff', 'logprob' or a function")

    @classmethod
    def from_task(cls, task: PatchingTask, metric: str = "logit_diff") -> Target:
        """The clean prompts of a patching task, scored by one of :data:`interp.tasks.METRICS`."""
        function = get_metric(metric)

        def task_metric(final_logits: Tensor, rows: Tensor) -> Tensor:
            return function(final_logits, task.subset(rows.cpu()))

        task_metric.__name__ = metric
        return cls(tuple(task.clean_prompts), task.answers.cpu(), task.wrong.cpu(), task_metric, name=task.name)

    def values(self, final_logits: Float[Tensor, "batch vocab"], rows: Int[Tensor, " batch"]) -> Float[Tensor, " batch"]:
        """The metric per example of a batch whose examples are ``rows``."""
        if callable(self.metric):
            return self.metric(final_logits, rows)
        logits = final_logits.float() if final_logits.dtype in (torch.float16, torch.bfloat16) else final_logits
        answers = self.answers.to(logits.device)[rows.to(logits.device)]
        if self.metric == "logprob":
            logits = logits.log_softmax(-1)
        value = logits.gather(-1, answers[:, None])[:, 0]
        if self.metric == "logit_diff":
            wrong = self.wrong.to(logits.device)[rows.to(logits.device)]
            value = value - logits.gather(-1, wrong[:, None])[:, 0]
        return value

    @property
    def metric_name(self) -> str:
        return self.metric if isinstance(self.metric, str) else getattr(self.metric, "__name__", "custom")


@dataclass(frozen=True)
class Sensitivities:
    """Pooled gradients of the target metric at every layer, and the metric itself, per example."""

    kind: str
    layers: tuple[int, ...]
    grads: Float[Tensor, "layer n *dims"]
    values: Float[Tensor, " n"]
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def derivatives(self, cavs: LayerVectors) -> Float[Tensor, "layer n"]:
        """``S(x)`` for every layer and example: pooled gradient . unit CAV (see the module docstring)."""
        if cavs.kind != self.kind:
            raise InvalidArgumentError(f"CAVs at {cavs.kind} cannot be read against gradients at {self.kind}")
        units = torch.stack([cavs.unit(layer) for layer in self.layers]).to(self.grads)
        return torch.einsum("lnd,ld->ln", self.grads.flatten(2), units.flatten(1))


def sensitivities(
    model: Model,
    target: Target,
    kind: str,
    layers: Sequence[int],
    selector: TokenSelector = LAST_TOKEN,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> Sensitivities:
    """Pooled gradients of ``target``'s metric at ``kind`` for all ``layers``: one backward per batch."""
    chosen, sites = layer_sites(model, kind, layers)
    prompts = list(target.prompts)
    ranges = selector.ranges(model, prompts, target.marks)
    grads, values = [], []
    for lo in range(0, len(prompts), batch_size):
        hi = min(lo + batch_size, len(prompts))
        rows = torch.arange(lo, hi)
        batch = model.to_tokens(prompts[lo:hi])

        def metric(logits: Tensor, rows: Tensor = rows) -> Tensor:
            return target.values(logits[:, -1], rows).sum()

        logits, cache = model.run_with_cache(batch, sites=sites, grads=metric)
        mask = range_mask(ranges[lo:hi], batch.lengths.cpu(), batch.shape[1]).to(logits.device)
        pooled = []
        for site in sites:
            grad = cache.grads[site]
            weights = mask.to(grad.dtype).reshape(*mask.shape, *([1] * (grad.ndim - 2)))
            pooled.append((grad * weights).sum(1))
        grads.append(torch.stack(pooled).detach().cpu())
        values.append(target.values(logits[:, -1], rows).detach().cpu())
        if progress is not None:
            progress(hi, len(prompts))
    return Sensitivities(kind, tuple(chosen), torch.cat(grads, dim=1), torch.cat(values), ranges)


def load_target(model: Model, path: str | Path, metric: TargetMetric = "logit_diff") -> Target:
    """A target from a JSONL file of ``{"prompt": ..., "answer": ..., "wrong": ...}`` lines.

    ``answer`` and ``wrong`` are single tokens of the model's tokenizer (usually with a leading
    space); ``wrong`` may be omitted for the ``logit`` and ``logprob`` metrics; an optional
    ``mark`` names the prompt's marked substring for the ``marked`` selector.
    """
    file = Path(path)
    if not file.is_file():
        raise InvalidArgumentError(f"target file {file} does not exist; give a JSONL file of {{\"prompt\", \"answer\"}} lines")
    prompts, answers, wrong, marks = [], [], [], []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            prompts.append(str(record["prompt"]))
            answers.append(model.token_id(record["answer"]))
            wrong.append(model.token_id(record["wrong"]) if "wrong" in record else None)
            marks.append(record.get("mark"))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InvalidArgumentError(f"{file} line {number}: expected {{\"prompt\", \"answer\", \"wrong\"}} ({error})") from None
        except InterpError as error:
            raise InvalidArgumentError(f"{file} line {number}: {error}") from None
    if not prompts:
        raise InvalidArgumentError(f"target file {file} has no examples")
    has_wrong = all(w is not None for w in wrong)
    return Target(
        tuple(prompts), torch.tensor(answers), torch.tensor(wrong) if has_wrong else None, metric,
        tuple(marks) if all(m is not None for m in marks) else None, name=file.stem,
    )


def tcav_scores(derivatives: Float[Tensor, "... n"]) -> tuple[Float[Tensor, ...], Float[Tensor, ...]]:
    """``(sign_count, magnitude)`` over the last axis: fraction of ``S > 0``, and the mean of ``S``."""
    return (derivatives > 0).double().mean(-1), derivatives.double().mean(-1)
