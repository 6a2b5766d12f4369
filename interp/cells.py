"""Cells: which part of a model a sweep entry touches, shared by every method that sweeps.

A *cell* is one site at a selection (positions, heads, neurons). A sweep is a grid of cells with
named axes: ``resid_pre`` by (layer, pos), ``head_z`` by (layer, head), ``head_z_by_pos`` by
(layer, head, pos), ``head_pattern`` by (layer, head), ``neuron`` by (layer, neuron). A *cell
group* holds several cells treated together (path-style multi-site patches); sweeps use groups of
one. Exact patching evaluates cells; attribution methods estimate the same grid, cell for cell.

**Named positions.** ``positions`` may be a task's named positions instead of raw indices
(``positions: named`` for all of them, or a list of names such as ``[S1, IO, S2, END]``). The
``pos`` axis then runs over the names (its coordinates are indices into the name list, which the
result carries as its position labels), and a cell at a name is a group of cells, one per distinct
index, each restricted to the examples (``rows``) that have the name there: every example is
patched at its own token.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import ValidationInfo, field_validator

from interp.config import ConfigError, ConfigModel
from interp.errors import InterventionError
from interp.indices import as_indices, check_indices
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
    """Patch ``site`` at the given positions / heads / neurons (None = all), in the examples ``rows`` (None = all).

    Selections are non-negative integers (positions count from the sequence's start); a float, a
    bool or a negative entry is refused on construction, and entries beyond the site's axes when
    the cell is applied (:func:`selection_mask`).
    """

    site: str
    positions: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    neurons: tuple[int, ...] | None = None
    rows: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for what in ("positions", "heads", "neurons", "rows"):
            values = getattr(self, what)
            if values is None:
                continue
            checked = tuple(as_indices(values, what, f"of cell at {self.site!r}", InterventionError))
            negative = [v for v in checked if v < 0]
            if negative:
                raise InterventionError(
                    f"{what} {negative} of cell at {self.site!r} are negative; cells take absolute indices "
                    "(0 = first), so give 0..size-1 (sweeps map negative positions to these for you)"
                )
            object.__setattr__(self, what, checked)

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
    positions: list[int] | list[str] | Literal["named"] | None = None
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
    """Cell groups of a named sweep, in grid order, with its axes and coordinates.

    Selections must be integers in range: layers, heads and neurons in ``0 .. size - 1``, positions
    also ``-n_positions .. -1`` from the end. A selection for an axis the sweep does not have (heads
    on ``resid_pre``) is an error, never ignored.
    """
    if sweep not in SWEEPS:
        raise InterventionError(f"unknown sweep {sweep!r}; choose one of {sorted(SWEEPS)}")
    kind, axes = SWEEPS[sweep]
    head_count = n_kv_heads if kind in ("k", "v") else n_heads
    given = {"layer": layers, "pos": positions, "head": heads, "neuron": neurons}
    keys = {"layer": "layers", "pos": "positions", "head": "heads", "neuron": "neurons"}
    extra = [keys[axis] for axis, value in given.items() if value is not None and axis not in axes]
    if extra:
        raise InterventionError(
            f"sweep {sweep!r} has axes {list(axes)}, so it cannot select {extra}; remove {extra} "
            f"or choose a sweep with that axis (e.g. head_z for heads, neuron for neurons, *_by_pos for positions)"
        )
    sizes = {"layer": n_layers, "pos": n_positions, "head": head_count, "neuron": d_mlp}
    coords: dict[str, list[int]] = {}
    for axis in axes:
        value, size = given[axis], sizes[axis]
        coords[axis] = list(range(size)) if value is None else check_indices(
            value, size, "position" if axis == "pos" else axis, f"for sweep {sweep!r}", negative=axis == "pos",
            error=InterventionError,
        )
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
    positions: Sequence[int] | Sequence[str] | str | None = None,
    heads: Sequence[int] | None = None,
    neurons: Sequence[int] | None = None,
    allow_named: bool = False,
) -> tuple[list[CellGroup], tuple[str, ...], dict[str, list[int]]]:
    """The cell groups, axes and coordinates of a named sweep on a task.

    ``positions`` may name the task's positions (see the module docstring) where ``allow_named``
    (methods that patch each example at its own index); :func:`position_names` gives the names.
    """
    dims = model.dims
    names = position_names(task, positions)
    if names is None:
        return sweep_cells(
            sweep, dims.n_layers, task.clean.shape[1], dims.n_heads, dims.n_kv_heads, dims.d_mlp,
            layers=layers, positions=positions, heads=heads, neurons=neurons,  # type: ignore[arg-type]
        )
    if not allow_named:
        raise InterventionError(
            f"positions {positions!r} are named positions, which exact patching sweeps support; this method "
            "takes raw positions (integers), so give those or sweep by name with `interp patch`"
        )
    groups, axes, coords = sweep_cells(
        sweep, dims.n_layers, len(names), dims.n_heads, dims.n_kv_heads, dims.d_mlp,
        layers=layers, positions=list(range(len(names))), heads=heads, neurons=neurons,
    )
    width = task.clean.shape[1]
    named: list[CellGroup] = []
    for (cell,) in groups:
        assert cell.positions is not None, "sweeps by name have a pos axis"
        column = [width + p for p in task.positions[names[cell.positions[0]]]]
        named.append(tuple(
            Cell(cell.site, (at,), cell.heads, cell.neurons, rows=tuple(e for e, c in enumerate(column) if c == at))
            for at in sorted(set(column))
        ))
    return named, axes, coords


def position_names_asked(positions: Sequence[int] | Sequence[str] | str | None) -> bool:
    """Whether a sweep's ``positions`` ask for named positions (``"named"``, or a list holding a name)."""
    return positions is not None and (isinstance(positions, str) or any(isinstance(p, str) for p in positions))


def position_names(task: Any, positions: Sequence[int] | Sequence[str] | str | None) -> list[str] | None:
    """The named positions a sweep's ``positions`` ask for (None: raw positions).

    ``"named"`` is all of the task's names, in its order; a list of strings is those names.
    """
    if not position_names_asked(positions):
        return None
    declared = list(getattr(task, "positions", {}) or {})
    if isinstance(positions, str):
        if positions != "named":
            raise InterventionError(f"positions {positions!r}: give 'named', a list of names or a list of indices")
        if not declared:
            raise InterventionError(
                f"positions: named, but task {getattr(task, 'name', '?')!r} declares no named positions; "
                "give raw positions, or a task with named positions (IOI; JSONL pairs with a 'positions' field)"
            )
        return declared
    wanted = list(positions)
    if any(not isinstance(p, str) for p in wanted):
        raise InterventionError(f"positions {wanted} mix names and indices; give one kind")
    unknown = [p for p in wanted if p not in declared]
    if unknown:
        raise InterventionError(
            f"task {getattr(task, 'name', '?')!r} has no named position {unknown}; its named positions are "
            f"{declared or 'none'}"
        )
    if len(set(wanted)) != len(wanted):
        raise InterventionError(f"positions {wanted} repeat a name; list each once")
    return wanted


def selection_mask(cell: Cell, site: Site, shape: Sequence[int], start_pos: int) -> torch.Tensor:
    """Boolean mask over a site's non-batch axes (suffix coordinates) selecting the cell's entries."""
    dims = list(shape[1:])
    mask = torch.ones(dims, dtype=torch.bool)
    pos_axis, head_axis = site.pos_axis - 1, (site.head_axis - 1 if site.head_axis is not None else None)
    context = f"of cell at {site.name!r}"
    if cell.positions is not None:
        keep = torch.zeros(dims[pos_axis], dtype=torch.bool)
        positions = check_indices(cell.positions, start_pos + dims[pos_axis], "positions", context, error=InterventionError)
        keep[[p - start_pos for p in positions]] = True
        mask &= _along(keep, pos_axis, len(dims))
    if cell.heads is not None:
        if head_axis is None:
            raise InterventionError(f"cell at {site.name!r} selects heads, but the site has no head axis")
        keep = torch.zeros(dims[head_axis], dtype=torch.bool)
        keep[check_indices(cell.heads, dims[head_axis], "heads", context, error=InterventionError)] = True
        mask &= _along(keep, head_axis, len(dims))
    if cell.neurons is not None:
        if site.kind not in FEATURE_KINDS:
            raise InterventionError(f"cell at {site.name!r} selects neurons; only MLP neuron sites {FEATURE_KINDS} have them")
        keep = torch.zeros(dims[-1], dtype=torch.bool)
        keep[check_indices(cell.neurons, dims[-1], "neurons", context, error=InterventionError)] = True
        mask &= _along(keep, len(dims) - 1, len(dims))
    return mask


def _along(vector: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[axis] = vector.shape[0]
    return vector.view(shape)
