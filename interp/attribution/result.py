"""Attribution results: estimates laid out exactly like an exact patching sweep.

An attribution method *estimates* what a patching sweep measures. To make the two directly
comparable (same tables, same heatmaps, same persistence), :class:`AttributionResult` is a
:class:`~interp.patching.PatchingResult`: same ``sweep``, ``axes``, ``coords``, ``clean``/``corrupt``
baselines, and ``values`` of shape ``(example, *grid)`` holding the *estimated patched metric*,

    values[e, cell] = m_base[e] + estimate[e, cell],

where the base run is the corrupt run for denoising and the clean run for noising (docs/methods.md,
Directions and metrics). ``normalized()``, ``mean()``, the heatmaps of :mod:`interp.viz.patching` and
``to_frame()`` therefore read an attribution exactly as they read an exact sweep; :meth:`effects`
gives the raw per-example estimates.

Two additions: ``method`` names the estimator, and ``scores`` holds an optional unsigned ranking
score per example and cell (AtP*'s GradDrop magnitude, docs/methods.md, GradDrop), used in place of
``|mean estimate|`` to rank components. The cost counts forward *and* backward passes
(:class:`AttributionCost`), next to the forward passes a naive exact sweep would need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Float

from interp.patching import Cost, PatchingResult


@dataclass
class AttributionCost(Cost):
    """Work done by an attribution method.

    ``forward_passes`` and ``backward_passes`` count passes over the whole batch; a partial backward
    (GradDrop's truncated passes) counts as the fraction of blocks it traverses. ``flops`` counts a
    backward pass as twice its forward. ``naive_forward_passes`` is the number of cells, i.e. what
    one-forward-per-cell exact patching would spend.
    """

    backward_passes: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {**super().as_dict(), "backward_passes": self.backward_passes}

    @property
    def passes(self) -> float:
        """Forward passes plus backward passes (each backward counted once)."""
        return self.forward_passes + self.backward_passes


@dataclass
class AttributionResult(PatchingResult):
    """An attribution estimate of a patching sweep (see the module docstring).

    Attributes (beyond :class:`~interp.patching.PatchingResult`'s):
        method: ``"atp"``, ``"atp*"``, ``"relp"``, ``"ig"``, ...
        scores: unsigned ranking score per example and cell, or None to rank by ``|estimate|``.
    """

    method: str = "atp"
    scores: Float[torch.Tensor, "example ..."] | None = None
    cost: AttributionCost = field(default_factory=AttributionCost)

    @property
    def base(self) -> Float[torch.Tensor, " example"]:
        """The metric of the run being patched: corrupt for denoising, clean for noising."""
        return self.corrupt if self.direction == "denoising" else self.clean

    def effects(self) -> Float[torch.Tensor, "example ..."]:
        """Per-example estimated effect of patching each cell, ``m(patched) - m(base)``."""
        return self.values - self.base.view(-1, *[1] * (self.values.ndim - 1))

    def ranking(self) -> Float[torch.Tensor, "..."]:
        """Per-cell importance used to rank components: mean score, else ``|mean effect|``."""
        if self.scores is not None:
            return self.scores.mean(dim=0)
        return self.effects().mean(dim=0).abs()

    def describe(self) -> dict[str, Any]:
        """JSON-able description; ``cost`` keeps :class:`Cost`'s fields, so patching loaders read it too."""
        cost = asdict(self.cost)
        backward = cost.pop("backward_passes")
        return {**super().describe(), "cost": cost, "backward_passes": backward, "method": self.method}

    def tensors(self) -> dict[str, torch.Tensor]:
        tensors = super().tensors()
        if self.scores is not None:
            tensors["scores"] = self.scores.contiguous()
        return tensors

    @classmethod
    def from_parts(cls, description: dict[str, Any], tensors: dict[str, torch.Tensor]) -> AttributionResult:
        """Rebuild a result from :meth:`describe` and :meth:`tensors`."""
        base = PatchingResult.from_parts({**description, "cost": {}}, tensors)
        return cls(
            **{name: getattr(base, name) for name in ("sweep", "axes", "coords", "values", "clean", "corrupt",
                                                       "metric", "direction", "position_labels", "meta")},
            method=description["method"],
            scores=tensors.get("scores"),
            cost=AttributionCost(**description["cost"], backward_passes=description["backward_passes"]),
        )
