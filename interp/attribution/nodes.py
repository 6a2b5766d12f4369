"""From per-entry attributions at a site to the cells of a patching sweep.

Every attribution method here ends the same way. It has, for one site tensor (say
``blocks.3.hook_mlp_out``, shape ``(example, pos, d_model)``), an attribution per *entry*: for
AtP the product ``(n_source - n_base) * dm/dn``, for RelP the same with propagation coefficients,
for IG with averaged gradients. A sweep cell patches a *set* of entries (one position, one head at
all positions, one neuron at all positions, ...), and to first order the effect of patching a set
is the sum of its entries' attributions (docs/methods.md, Directions and metrics). :func:`cell_sums` does that sum for
each sweep's geometry, :func:`grid` stacks the layers and selects the sweep's coordinates, so the
result lines up with :func:`interp.patching.patch_sweep` cell for cell.

Sweep geometries (from :data:`interp.patching.SWEEPS`):

=======================  ===================  ===============================
sweep                    cell                 entries summed
=======================  ===================  ===============================
resid_*, attn_out, ...   (layer, pos)         d_model at that position
head_{z,q,k,v}           (layer, head)        all positions x d_head
head_{z,q,k,v}_by_pos    (layer, head, pos)   d_head
head_pattern             (layer, head)        all (query, key) pairs
neuron                   (layer, neuron)      all positions
=======================  ===================  ===============================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from interp.errors import InvalidArgumentError
from interp.model import Model
from interp.cells import SWEEPS, sweep_groups
from interp.sites import site_name


@dataclass(frozen=True)
class SweepSpec:
    """A named sweep on a task: its site kind, axes, coordinates and number of cells."""

    sweep: str
    kind: str
    axes: tuple[str, ...]
    coords: dict[str, list[int]]
    n_cells: int

    @property
    def layers(self) -> list[int]:
        return self.coords["layer"]

    def site(self, layer: int) -> str:
        return site_name(self.kind, layer)

    @property
    def sites(self) -> list[str]:
        return [self.site(layer) for layer in self.layers]

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[a]) for a in self.axes)


def sweep_spec(
    model: Model,
    task: Any,
    sweep: str,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    neurons: Sequence[int] | None = None,
) -> SweepSpec:
    """Validate a sweep against the model and task exactly as the exact engine does."""
    groups, axes, coords = sweep_groups(model, task, sweep, layers, positions, heads, neurons)
    kind = SWEEPS[sweep][0]
    for layer in coords["layer"]:
        model.site(site_name(kind, layer))
    return SweepSpec(sweep=sweep, kind=kind, axes=axes, coords=coords, n_cells=len(groups))


def cell_sums(spec: SweepSpec, entries: Float[torch.Tensor, "example ..."]) -> Float[torch.Tensor, "example ..."]:
    """Sum per-entry attributions of one layer's site into the sweep's non-layer axes (all coords)."""
    rest = spec.axes[1:]
    if spec.kind == "pattern":
        return entries.sum(dim=(2, 3))
    if rest == ("pos",):
        return entries.sum(dim=-1)
    if rest == ("head",):
        return entries.sum(dim=(1, 3))
    if rest == ("head", "pos"):
        return entries.sum(dim=-1).transpose(1, 2)
    if rest == ("neuron",):
        return entries.sum(dim=1)
    raise InvalidArgumentError(f"no cell geometry for sweep {spec.sweep!r} with axes {spec.axes}")


def select(spec: SweepSpec, full: Float[torch.Tensor, "example ..."]) -> Float[torch.Tensor, "example ..."]:
    """Keep the sweep's coordinates along each non-layer axis of a one-layer tensor."""
    for offset, axis in enumerate(spec.axes[1:], start=1):
        index = torch.tensor(spec.coords[axis], device=full.device)
        full = full.index_select(offset, index)
    return full


def grid(
    spec: SweepSpec, per_layer: Callable[[int], Float[torch.Tensor, "example ..."]]
) -> Float[torch.Tensor, "example ..."]:
    """Stack ``per_layer(layer)`` (one layer's cells, all coordinates) into ``(example, *grid)``."""
    return torch.stack([select(spec, per_layer(layer)) for layer in spec.layers], dim=1)
