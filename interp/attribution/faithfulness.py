"""Faithfulness and completeness of sparse feature circuits (Marks et al. 2024), per attribution method.

A feature circuit is a set ``C`` of nodes (SAE latents and error nodes,
:class:`~interp.attribution.features.FeatureNodes`). To ask whether ``C`` carries the behaviour, run
the clean prompts with every SAE spliced in and every node *outside* ``C`` mean-ablated (set to its
mean over the task's prompts at each position, :class:`~interp.attribution.features.FeatureSplice`);
nodes inside ``C`` keep computing from their (changed) inputs. With ``m(C)`` the mean metric of that
run, ``m(M)`` the model's (nothing ablated) and ``m(empty)`` with every node ablated:

    faithfulness(C) = (m(C) - m(empty)) / (m(M) - m(empty))

is 1 for the whole model and 0 for the empty circuit. **Completeness** asks the converse: ablate
only the nodes *in* ``C`` and report the same ratio for the complement ``M \\ C``; a complete circuit
leaves little (near 0) for the rest of the model.

A method's curve keeps its top-``N`` nodes (by ``|mean estimated effect|``) as ``N`` grows: a
faithful attribution reaches high faithfulness with few nodes. :func:`faithfulness_curves` draws it
for several methods at the same ``N`` values, one forward of the clean prompts per point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.attribution.features import FeatureNodes, FeatureSplice, FeatureValues, _mean_values, _site, node_positions
from interp.errors import InvalidArgumentError
from interp.model import Model
from interp.sae import SAE
from interp.tasks.direction import run_spec
from interp.tasks.metrics import TaskMetric, resolve_metric


def ablated_metric(
    model: Model,
    task: Any,
    saes: Sequence[SAE],
    keep: Bool[Tensor, " node"],
    means: FeatureValues,
    metric_fn: TaskMetric,
    skip_first: int = 0,
) -> Float[Tensor, " example"]:
    """The metric on the clean prompts with every node where ``keep`` is False mean-ablated."""
    nodes = FeatureNodes.of(saes)
    where = node_positions(task, "clean", skip_first) if skip_first else None
    if keep.shape != (len(nodes),):
        raise InvalidArgumentError(f"keep has shape {tuple(keep.shape)}; expected ({len(nodes)},), one flag per node")
    splices = []
    for index, (sae, offset) in enumerate(zip(saes, nodes.offsets, strict=True)):
        drop = ~keep[offset: offset + sae.d_sae + 1]
        splices.append(FeatureSplice(
            site=_site(sae), sae=sae,
            latent_values=means.latents[index], latent_mask=drop[:-1].view(1, 1, -1),
            error_values=means.error[index], error_mask=drop[-1:].view(1, 1, 1), where=where,
        ))
    batch, _ = run_spec(task, "clean", model.device)
    with torch.no_grad(), model.hooks(splices) as session:
        logits = model.forward(batch, session, logits_to_keep=1)[:, -1]
    return metric_fn(logits, task).detach().cpu()


def default_sizes(n_nodes: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... up to and including every node."""
    sizes, scale = [0], 1
    while scale < n_nodes:
        sizes += [s * scale for s in (1, 2, 5) if s * scale < n_nodes]
        scale *= 10
    return sizes + [n_nodes]


@dataclass
class FaithfulnessCurves:
    """Faithfulness and completeness against circuit size, per method.

    ``table`` columns: ``method``, ``nodes`` (N), ``faithfulness``, ``complement`` (faithfulness of
    the model with the top N ablated: completeness), ``metric`` and ``metric_complement`` (raw mean
    metrics). ``full`` and ``empty`` are ``m(M)`` and ``m(empty)``.
    """

    table: pd.DataFrame
    full: float
    empty: float
    meta: dict[str, Any] = field(default_factory=dict)


def faithfulness_curves(
    model: Model,
    task: Any,
    saes: Sequence[SAE],
    rankings: Mapping[str, Float[Tensor, " node"]],
    sizes: Sequence[int] | None = None,
    metric: str | TaskMetric = "logit_diff",
    skip_first: int = 0,
) -> FaithfulnessCurves:
    """Keep each method's top-``N`` nodes (by its ranking score), mean-ablate the rest, for every N."""
    nodes = FeatureNodes.of(saes)
    metric_name, metric_fn = resolve_metric(metric)
    sizes = default_sizes(len(nodes)) if sizes is None else sorted(set(int(s) for s in sizes))
    if sizes and (sizes[0] < 0 or sizes[-1] > len(nodes)):
        raise InvalidArgumentError(f"circuit sizes must lie in 0..{len(nodes)}, got {sizes[0]}..{sizes[-1]}")
    means = _mean_values(model, task, saes, metric_fn, skip_first)
    everything = torch.ones(len(nodes), dtype=torch.bool)
    full = float(ablated_metric(model, task, saes, everything, means, metric_fn, skip_first).double().mean())
    empty = float(ablated_metric(model, task, saes, ~everything, means, metric_fn, skip_first).double().mean())
    gap = full - empty
    rows = []
    for method, scores in rankings.items():
        if scores.shape != (len(nodes),):
            raise InvalidArgumentError(f"{method}: {tuple(scores.shape)} scores for {len(nodes)} nodes")
        order = scores.detach().double().cpu().argsort(descending=True, stable=True)
        for size in sizes:
            keep = torch.zeros(len(nodes), dtype=torch.bool)
            keep[order[:size]] = True
            kept = float(ablated_metric(model, task, saes, keep, means, metric_fn, skip_first).double().mean())
            rest = float(ablated_metric(model, task, saes, ~keep, means, metric_fn, skip_first).double().mean())
            rows.append({"method": method, "nodes": size, "faithfulness": (kept - empty) / gap,
                         "complement": (rest - empty) / gap, "metric": kept, "metric_complement": rest})
    return FaithfulnessCurves(pd.DataFrame(rows), full, empty, meta={"metric": metric_name, "nodes": len(nodes)})
