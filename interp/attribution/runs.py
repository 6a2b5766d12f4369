"""The two unpatched runs every attribution method starts from, with gradients where asked.

A task defines two runs: the clean prompts, and the corrupt prompts with the task's corrupt
interventions (e.g. embedding noise). A patching direction names one of them the *base* run (the
one that would be patched: corrupt for denoising, clean for noising) and the other the *source*
(where patch values come from). Attribution needs the source's activations, the base's activations
and the gradient of the metric on the base run at every site of the sweep.

:func:`forward` runs one of them through the hook layer and keeps the autograd graph alive, so a
method can take as many backward passes as it needs (AtP takes one, GradDrop one per layer). The
gradient metric is the *sum* over examples of the per-example metric: examples never interact in a
forward pass, so the gradient at example ``e``'s activations is exactly ``d m_e / d n_e``, with no
``1/B`` factor to undo (the batch-mean pitfall, docs/methods.md, Directions and metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float

from interp.attribution.attention import AttentionRecord, AttentionRule, attribution_attention
from interp.interventions import Intervention
from interp.model import Model
from interp.tasks.direction import Which, run_spec
from interp.tasks.metrics import TaskMetric

@dataclass
class ForwardRun:
    """One forward pass: captured activations, live graph tensors at gradient sites, the metric."""

    acts: dict[str, torch.Tensor]
    live: dict[str, torch.Tensor]
    metric: Float[torch.Tensor, " example"]
    attention: dict[int, AttentionRecord] = field(default_factory=dict)

    def grads(self, names: Sequence[str], retain_graph: bool = False) -> dict[str, torch.Tensor]:
        """``d sum(metric) / d site`` for each name (zeros where the metric does not depend on it)."""
        tensors = [self.live[name] for name in names]
        grads = torch.autograd.grad(self.metric.sum(), tensors, retain_graph=retain_graph, allow_unused=True)
        return {
            name: (torch.zeros_like(t) if g is None else g).detach()
            for name, t, g in zip(names, tensors, grads, strict=True)
        }


def forward(
    model: Model,
    task: Any,
    which: Which,
    metric: TaskMetric,
    sites: Sequence[str],
    grad_sites: Sequence[str] = (),
    extra_interventions: Sequence[Intervention] = (),
    record_attention: bool = False,
    attention_rule: AttentionRule = "gradient",
    rules: Any = None,
) -> ForwardRun:
    """Run the clean or corrupt prompts capturing ``sites``, keeping the graph for ``grad_sites``.

    Args:
        extra_interventions: applied after the run's own (e.g. an IG interpolation).
        record_attention: record each layer's post-RoPE queries and keys (:class:`AttentionRecord`).
        attention_rule: the attention's backward rule (RelP); ``"gradient"`` is the ordinary one.
        rules: a context manager factory ``rules(model)`` installing modified backward rules
            (RelP) for the duration of the forward, or None.
    """
    batch, interventions = run_spec(task, which, model.device)
    record: dict[int, AttentionRecord] = {}
    order = {name: index for index, name in enumerate(model.sites)}
    sites = sorted(set(sites), key=order.__getitem__)
    grad_sites = sorted(set(grad_sites), key=order.__getitem__)
    needs_grad = bool(grad_sites)
    with ExitStack() as stack:
        if rules is not None:
            stack.enter_context(rules(model))
        session = stack.enter_context(
            model.hooks([*interventions, *extra_interventions], capture=sites, grad_sites=grad_sites)
        )
        if record_attention or attention_rule != "gradient":
            stack.enter_context(attribution_attention(model, attention_rule, record if record_attention else None))
        with torch.set_grad_enabled(needs_grad):
            logits = model.forward(batch, session, logits_to_keep=1)
            values = metric(logits[:, -1], task)
        acts = dict(session.activations)
        live = {name: session.live[name] for name in grad_sites}
    return ForwardRun(acts=acts, live=live, metric=values, attention=record)
