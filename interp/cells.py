"""Cells: which part of a model a sweep entry touches, shared by every method that sweeps.

A *cell* is one site at a selection (positions, heads, neurons). A sweep is a grid of cells with
named axes: ``resid_pre`` by (layer, pos), ``head_z`` by (layer, head), ``head_z_by_pos`` by
(layer, head, pos), ``head_pattern`` by (layer, head), ``neuron`` by (layer, neuron). A *cell
group* holds several cells treated together (path-style multi-site patches); sweeps use groups of
one. Exact patching evaluates cells; attribution methods estimate the same grid, cell for cell.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationInfo, field_validator

from interp.config import ConfigError, ConfigModel
from interp.errors import InterventionError
from interp.sites import Site, parse_site, site_name

if TYPE_CHECKING:
    from interp.model import Model

# sweep name -> (site kind, axes)
SWEEPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "resid_pre": ("resid_pre", ("layer", "pos")),
    "resid_mid": ("resid_mid", ("layer", "pos")),
    "resid_post": ("resid_post", ("layer", "pos")),
    "attn_out": ("attn_out", ("layer", "pos")),
    "mlp_out": ("mlp_out", ("layer", "pos")),
    "head_z": ("z", ("layer", "head")),
    "head_q": ("q", ("layer", "head")),
    "head_k": ("k", ("layer", "head")),
    "head_v": ("v", ("layer", "head")),
    "head_z_by_pos": ("z", ("layer", "head", "pos")),
    "head_q_by_pos": ("q", ("layer", "head", "pos")),
    "head_k_by_pos": ("k", ("layer", "head", "pos")),
    "head_v_by_pos": ("v", ("layer", "head", "pos")),
    "head_pattern": ("pattern", ("layer", "head")),
    "neuron": ("mlp_post", ("layer", "neuron")),
}
FEATURE_KINDS = ("mlp_pre", "mlp_pre_linear", "mlp_post")


@dataclass(frozen=True)
class Cell:
    """Patch ``site`` at the given positions / heads / neurons (None = all)."""

    site: str
    positions: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    neurons: tuple[int, ...] | None = None

    @property
    def parsed(self) -> Site:
        site = parse_site(self.site)
        if site is None:
            raise InterventionError(f"cell site {self.site!r} is not a site name")
        return site


CellGroup = tuple[Cell, ...]


class SweepRequest(ConfigModel):
    """A named sweep, optionally restricted to some layers / positions / heads / neurons.

    The one description of "which cells" that exact patching, the attribution methods and config
    files share: ``SweepRequest("head_z", layers=[3, 4])`` in code, ``{sweep: head_z, layers: [3, 4]}``
    in a config file. Selections are checked against the model when the sweep runs.
    """

    sweep: str
    layers: list[int] | None = None
    positions: list[int] | None = None
    heads: list[int] | None = None
    neurons: list[int] | None = None

    def __init__(self, sweep: str | None = None, /, **fields: Any) -> None:
        if sweep is not None:
            fields["sweep"] = sweep
        super().__init__(**fields)

    @field_validator("layers", "positions", "heads", "neurons")
    @classmethod
    def _not_empty(cls, value: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if value is not None and not value:
            raise ConfigError(
                f"an empty {info.field_name} list selects no cells; leave {info.field_name} out to use all of them, "
                "or list at least one"
            )
        return value

    @field_validator("sweep")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SWEEPS:
            raise ConfigError(f"unknown sweep {value!r}; choose one of {sorted(SWEEPS)}")
        return value


def sweep_cells(
    sweep: str,
    n_layers: int,
    n_positions: int,
    n_heads: int,
    n_kv_heads: int,
    d_mlp: int,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    neurons: Sequence[int] | None = None,
) -> tuple[list[CellGroup], tuple[str, ...], dict[str, list[int]]]:
    """Cell groups of a named sweep, in grid order, with its axes and coordinates."""
    if sweep not in SWEEPS:
        raise InterventionError(f"unknown sweep {sweep!r}; choose one of {sorted(SWEEPS)}")
    kind, axes = SWEEPS[sweep]
    head_count = n_kv_heads if kind in ("k", "v") else n_heads
    coords = {
        "layer": list(range(n_layers)) if layers is None else [int(x) for x in layers],
        "pos": list(range(n_positions)) if positions is None else [int(p) % n_positions for p in positions],
        "head": list(range(head_count)) if heads is None else [int(h) for h in heads],
        "neuron": list(range(d_mlp)) if neurons is None else [int(n) for n in neurons],
    }
    for axis, size in (("layer", n_layers), ("pos", n_positions), ("head", head_count), ("neuron", d_mlp)):
        bad = [x for x in coords[axis] if not 0 <= x < size]
        if bad:
            raise InterventionError(f"{axis} {bad} out of range for sweep {sweep!r} (valid: 0..{size - 1})")
    coords = {axis: coords[axis] for axis in axes}
    groups: list[CellGroup] = []
    for values in itertools.product(*(coords[a] for a in axes)):
        point = dict(zip(axes, values, strict=True))
        cell = Cell(
            site=site_name(kind, point["layer"]),
            positions=(point["pos"],) if "pos" in point else None,
            heads=(point["head"],) if "head" in point else None,
            neurons=(point["neuron"],) if "neuron" in point else None,
        )
        groups.append((cell,))
    return groups, axes, coords


def sweep_groups(
    model: Model,
    task: Any,
    sweep: str,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    neurons: Sequence[int] | None = None,
) -> tuple[list[CellGroup], tuple[str, ...], dict[str, list[int]]]:
    """The cell groups, axes and coordinates of a named sweep on a task."""
    dims = model.dims
    return sweep_cells(
        sweep, dims.n_layers, task.clean.shape[1], dims.n_heads, dims.n_kv_heads, dims.d_mlp,
        layers=layers, positions=positions, heads=heads, neurons=neurons,
    )


def selection_mask(cell: Cell, site: Site, shape: Sequence[int], start_pos: int) -> torch.Tensor:
    """Boolean mask over a site's non-batch axes (suffix coordinates) selecting the cell's entries."""
    dims = list(shape[1:])
    mask = torch.ones(dims, dtype=torch.bool)
    pos_axis, head_axis = site.pos_axis - 1, (site.head_axis - 1 if site.head_axis is not None else None)
    if cell.positions is not None:
        keep = torch.zeros(dims[pos_axis], dtype=torch.bool)
        keep[[p - start_pos for p in cell.positions]] = True
        mask &= _along(keep, pos_axis, len(dims))
    if cell.heads is not None:
        if head_axis is None:
            raise InterventionError(f"cell at {site.name!r} selects heads, but the site has no head axis")
        keep = torch.zeros(dims[head_axis], dtype=torch.bool)
        keep[list(cell.heads)] = True
        mask &= _along(keep, head_axis, len(dims))
    if cell.neurons is not None:
        if site.kind not in FEATURE_KINDS:
            raise InterventionError(f"cell at {site.name!r} selects neurons; only MLP neuron sites {FEATURE_KINDS} have them")
        keep = torch.zeros(dims[-1], dtype=torch.bool)
        keep[list(cell.neurons)] = True
        mask &= _along(keep, len(dims) - 1, len(dims))
    return mask


def _along(vector: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[axis] = vector.shape[0]
    return vector.view(shape)
