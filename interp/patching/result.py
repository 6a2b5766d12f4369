"""Patching results: per-example metric values on a grid of cells with named axes.

A sweep's result keeps every example's metric for every cell, plus the metric on the unpatched
clean and corrupt runs, so any summary can be recomputed. The usual summary is the *normalised*
metric, ``(m - m_corrupt) / (m_clean - m_corrupt)``: 1 means the patch restores clean behaviour,
0 means it has the corrupt run's behaviour. The baselines are the batch means of the clean and
corrupt metrics (as in the IOI literature; docs/methods.md, Directions and metrics), so each example's normalised value
is on one shared scale and their mean is the normalised mean; per-example baselines would divide
by near-zero differences on examples the model barely distinguishes.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float

from interp.errors import InterpError


@dataclass
class Cost:
    """Work done by a sweep, next to what a naive one-full-forward-per-cell sweep would do.

    ``noop_rows`` counts (cell, example) pairs answered from the unpatched run without a forward,
    because the patch wrote the values the site already had.
    """

    forward_passes: int = 0
    flops: float = 0.0
    naive_forward_passes: int = 0
    naive_flops: float = 0.0
    seconds: float = 0.0
    noop_rows: int = 0

    @property
    def flop_fraction(self) -> float:
        return self.flops / self.naive_flops if self.naive_flops else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "forward_passes": self.forward_passes,
            "flops": self.flops,
            "naive_forward_passes": self.naive_forward_passes,
            "naive_flops": self.naive_flops,
            "flop_fraction": self.flop_fraction,
            "seconds": self.seconds,
            "noop_rows": self.noop_rows,
        }


# What each quantity a result can show is, and where it reads "no effect".
QUANTITIES: tuple[str, ...] = ("normalized", "effect", "normalized_effect", "raw")
MEANING = {
    "denoising": "clean activations patched into the corrupt run: a cell that restores the clean behaviour is sufficient",
    "noising": "corrupt activations patched into the clean run: a cell whose patch destroys the behaviour is necessary",
}


@dataclass
class PatchingResult:
    """Values of a patching sweep.

    Attributes:
        sweep: sweep name (``"resid_pre"``, ``"head_z"``, ... or ``"cells"``).
        axes: names of the grid axes, e.g. ``("layer", "pos")``.
        coords: the labels of each axis (layer / position / head / neuron indices).
        values: the metric per example and cell, shape ``(example, *grid)``.
        clean, corrupt: the metric on the unpatched clean and corrupt runs, per example.
        metric, direction: what was measured and which way it was patched.
        cost: forward passes and FLOPs used, next to a naive sweep's.
        position_labels: a label for each position (for figure axes), if known: the position's
            name for a sweep by named position, else its token where every example has the same one.
        positions: ``"raw"`` (the ``pos`` axis is batch columns) or ``"named"`` (the ``pos`` axis
            indexes ``position_labels``, the task's named positions; each example was patched at its
            own index for the name).
        meta: free-form provenance (model, task).
    """

    sweep: str
    axes: tuple[str, ...]
    coords: dict[str, list[int]]
    values: Float[torch.Tensor, "example ..."]
    clean: Float[torch.Tensor, " example"]
    corrupt: Float[torch.Tensor, " example"]
    metric: str
    direction: str
    cost: Cost = field(default_factory=Cost)
    position_labels: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    positions: str = "raw"

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape[1:])

    def normalized(self) -> Float[torch.Tensor, "example ..."]:
        """Per-example values on the clean = 1, corrupt = 0 scale (batch-mean baselines)."""
        clean, corrupt = self.clean.mean(), self.corrupt.mean()
        gap = clean - corrupt
        if gap.abs() < 1e-6 * max(1.0, float(clean.abs())):
            raise InterpError(
                f"clean and corrupt mean {self.metric} are equal ({float(clean):.4g}): the corruption does not "
                "change the behaviour, so normalised values are undefined; use the raw values"
            )
        return (self.values - corrupt) / gap

    @property
    def base(self) -> Float[torch.Tensor, " example"]:
        """The metric of the run being patched: corrupt for denoising, clean for noising."""
        return self.corrupt if self.direction == "denoising" else self.clean

    def effects(self) -> Float[torch.Tensor, "example ..."]:
        """Per-example effect of patching each cell, ``m(patched) - m(base)`` (0 = no effect)."""
        return self.values - self.base.view(-1, *[1] * (self.values.ndim - 1))

    def quantity(self, kind: str) -> Float[torch.Tensor, "example ..."]:
        """Per-example values of one of :data:`QUANTITIES`.

        ``normalized``: clean = 1, corrupt = 0 (no effect is 0 for denoising, 1 for noising);
        ``effect``: patched minus base metric (no effect = 0); ``normalized_effect``: the effect over
        the clean - corrupt gap (no effect = 0; +1 = fully restores, in denoising; -1 = fully destroys,
        in noising); ``raw``: the patched metric (no effect = the base run's mean metric).
        """
        if kind == "normalized":
            return self.normalized()
        if kind == "effect":
            return self.effects()
        if kind == "normalized_effect":
            return self.normalized() - self.no_effect("normalized")
        if kind == "raw":
            return self.values
        raise InterpError(f"unknown quantity {kind!r}; choose one of {list(QUANTITIES)}")

    def no_effect(self, kind: str) -> float:
        """The value of :meth:`quantity` ``kind`` for a patch that changes nothing: a colour scale's centre."""
        if kind == "normalized":
            return 0.0 if self.direction == "denoising" else 1.0
        if kind == "raw":
            return float(self.base.mean())
        return 0.0

    def quantity_label(self, kind: str) -> str:
        """A short label of a quantity, with the metric and where "no effect" sits."""
        labels = {
            "normalized": f"normalised {self.metric} (clean = 1, corrupt = 0; no effect = {self.no_effect(kind):g})",
            "effect": f"effect on {self.metric} (patched - {'corrupt' if self.direction == 'denoising' else 'clean'})",
            "normalized_effect": f"normalised effect on {self.metric} (patched - base) / (clean - corrupt)",
            "raw": f"patched {self.metric} (no effect = {self.no_effect(kind):.3g})",
        }
        if kind not in labels:
            raise InterpError(f"unknown quantity {kind!r}; choose one of {list(QUANTITIES)}")
        return labels[kind]

    def mean(self, normalized: bool = True) -> Float[torch.Tensor, "..."]:
        """Mean over examples of each cell."""
        return (self.normalized() if normalized else self.values).mean(dim=0)

    def sem(self, normalized: bool = True) -> Float[torch.Tensor, "..."]:
        """Standard error of the mean over examples of each cell."""
        data = self.normalized() if normalized else self.values
        n = data.shape[0]
        return data.std(dim=0, unbiased=True) / n**0.5 if n > 1 else torch.zeros_like(data[0])

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per (example, cell) with the axis labels, raw and normalised values."""
        grid = list(itertools.product(*(self.coords[a] for a in self.axes)))
        n_examples = self.values.shape[0]
        raw = self.values.reshape(n_examples, -1)
        normalized = self.normalized().reshape(n_examples, -1)
        columns: dict[str, Any] = {"example": [e for e in range(n_examples) for _ in grid]}
        for axis_index, axis in enumerate(self.axes):
            columns[axis] = [point[axis_index] for _ in range(n_examples) for point in grid]
        columns["value"] = raw.flatten().tolist()
        columns["normalized"] = normalized.flatten().tolist()
        return pd.DataFrame(columns)

    def summary_frame(self) -> pd.DataFrame:
        """One row per cell: mean and standard error, raw and normalised."""
        grid = list(itertools.product(*(self.coords[a] for a in self.axes)))
        frame = pd.DataFrame(grid, columns=list(self.axes))
        frame["mean"] = self.mean(normalized=False).flatten().tolist()
        frame["sem"] = self.sem(normalized=False).flatten().tolist()
        frame["normalized_mean"] = self.mean().flatten().tolist()
        frame["normalized_sem"] = self.sem().flatten().tolist()
        if "pos" in self.axes and self.position_labels is not None:
            frame.insert(list(self.axes).index("pos") + 1, "position", [self.position_labels[p] for p in frame["pos"]])
        return frame

    def describe(self) -> dict[str, Any]:
        """JSON-able description (everything but the tensors)."""
        return {
            "sweep": self.sweep,
            "axes": list(self.axes),
            "coords": self.coords,
            "metric": self.metric,
            "direction": self.direction,
            "cost": asdict(self.cost),
            "position_labels": self.position_labels,
            "positions": self.positions,
            "meta": self.meta,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.contiguous(), "clean": self.clean.contiguous(), "corrupt": self.corrupt.contiguous()}

    @classmethod
    def from_parts(cls, description: dict[str, Any], tensors: dict[str, torch.Tensor]) -> PatchingResult:
        """Rebuild a result from :meth:`describe` and :meth:`tensors`."""
        return cls(
            sweep=description["sweep"],
            axes=tuple(description["axes"]),
            coords={k: list(v) for k, v in description["coords"].items()},
            values=tensors["values"],
            clean=tensors["clean"],
            corrupt=tensors["corrupt"],
            metric=description["metric"],
            direction=description["direction"],
            cost=Cost(**description["cost"]),
            position_labels=description.get("position_labels"),
            meta=description.get("meta", {}),
            positions=description.get("positions", "raw"),
        )
