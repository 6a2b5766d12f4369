"""Patch cells: what one entry of a patching sweep patches, and where its forward can start.

A *cell* patches one site at a selection (positions, heads, neurons). A sweep is a grid of cells
with named axes: ``resid_pre`` by (layer, pos), ``head_z`` by (layer, head), ``head_z_by_pos`` by
(layer, head, pos), ``head_pattern`` by (layer, head), ``neuron`` by (layer, neuron). A *cell
group* patches several cells at once (path-style multi-site patches); sweeps use groups of one.

Causality decides how much of the forward a cell needs. Patching block ``L`` at position ``p``
cannot change anything in blocks before ``L``, nor any position before ``p`` in any block. So the
patched forward can start at block ``L`` from the unpatched run's residual stream, and only over
positions ``p..T-1``, with the unpatched keys and values of positions ``0..p-1`` given as a KV cache.
:func:`start_of` computes that (layer, position) for a cell group; residual-stream cells are
*entry* patches, written straight into the residual that starts the forward.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from interp.errors import InterventionError
from interp.sites import Site, parse_site, site_name

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


def is_entry(site: Site) -> bool:
    """Residual-stream sites that equal the input of some block (or of the final norm)."""
    return site.kind in ("resid_pre", "resid_post")


def entry_layer(site: Site) -> int:
    """The block whose input a residual cell patches (``n_layers`` = the final norm's input)."""
    assert site.layer is not None
    return site.layer if site.kind == "resid_pre" else site.layer + 1


def start_of(group: CellGroup, prefix_reuse: bool) -> tuple[int, int]:
    """(first block to compute, first position to compute) for a cell group; block -1 = from tokens."""
    start_layer, start_pos = 10**9, 10**9
    for cell in group:
        site = cell.parsed
        if site.kind in ("embed", "pos_embed"):
            layer = -1
        elif site.kind in ("normalized", "logits"):
            raise InterventionError(
                f"cannot patch {site.name!r}: it is downstream of every block; patch resid_post of the last block"
            )
        else:
            layer = entry_layer(site) if is_entry(site) else site.layer
        position = min(cell.positions) if (cell.positions and site.kind != "pattern") else 0
        start_layer = min(start_layer, layer)
        start_pos = min(start_pos, position)
    return start_layer, (start_pos if prefix_reuse and start_layer >= 0 else 0)


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
