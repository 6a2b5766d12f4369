"""Does a CAV that *reads* a concept also *steer* it? Its effect when added at its layer.

A probe can separate a concept from random text with a direction the model never uses. For each
layer's CAV we therefore also measure a causal effect: add ``strength`` times the site's median
token norm along the unit CAV, at every token of the target prompts, at that layer's site only
(an :class:`interp.interventions.Add` through the hook layer), and compare with the unsteered run:

* ``delta``: the mean change of the target metric (steered minus unsteered);
* ``kl``: the mean over prompts of ``KL(p_steered || p_unsteered)`` of the next-token
  distributions at the last position (nats), how much the prediction moves at all.

Reading (held-out accuracy, TCAV) and steering (``delta``, ``kl``) side by side show whether a
direction is both a good description and a used one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from interp.concepts.tcav import Target
from interp.errors import InvalidArgumentError
from interp.interventions import Add
from interp.model import Model
from interp.vectors import LayerVectors, StrengthUnit


@dataclass(frozen=True)
class SteerResult:
    """Per layer: metric change and KL of adding the CAV (see the module docstring)."""

    table: pd.DataFrame  # layer, strength, raw_scale, delta, delta_std, kl


def _final_logits(model: Model, prompts: list[str], interventions: list[Add], batch_size: int) -> torch.Tensor:
    rows = []
    with torch.no_grad():
        for lo in range(0, len(prompts), batch_size):
            rows.append(model.run(model.to_tokens(prompts[lo : lo + batch_size]), interventions)[:, -1].double().cpu())
    return torch.cat(rows)


def steer_effect(
    model: Model,
    cavs: LayerVectors,
    target: Target,
    strength: float = 4.0,
    unit: StrengthUnit = "norm",
    batch_size: int = 16,
) -> SteerResult:
    """Add each layer's CAV at its own layer (alone) and measure the metric change and the KL."""
    if unit == "norm" and cavs.token_norms is None:
        raise InvalidArgumentError("strength in unit 'norm' needs CAVs with token norms; use unit='raw'")
    prompts = list(target.prompts)
    rows = torch.arange(len(prompts))
    base = _final_logits(model, prompts, [], batch_size)
    base_values = target.values(base, rows)
    base_logp = base.log_softmax(-1)
    records = []
    for layer in cavs.layers:
        vector = cavs.scaled(layer, strength, unit) if unit == "norm" else strength * cavs.unit(layer)
        steered = _final_logits(model, prompts, [Add(site=cavs.site(layer), vector=vector)], batch_size)
        delta = target.values(steered, rows) - base_values
        logp = steered.log_softmax(-1)
        kl = (logp.exp() * (logp - base_logp)).sum(-1)
        records.append({
            "layer": layer, "strength": strength, "unit": unit, "added_norm": float(vector.norm()),
            "delta": float(delta.mean()), "delta_std": float(delta.std()) if len(delta) > 1 else 0.0,
            "kl": float(kl.mean()),
        })
    return SteerResult(pd.DataFrame(records))
