"""Interventions: values that say how to change a site's activations during a forward pass.

An intervention is data, not a closure: a frozen dataclass naming the site, what to do (patch in a
source, add a scaled vector, scale, zero, mean-ablate, replace by a function) and which part of the
site to touch (``positions``, ``heads`` and batch ``rows``; None means all). Any number of them
compose in one forward, applied in the order given. They round-trip through JSON + safetensors with
:func:`save_interventions` / :func:`load_interventions` (never pickle), so a sweep's plan can be
written down, resumed and shared. Tensor fields (``source``, ``vector``, ``mean``, ``mask``) also
take numpy arrays and nested lists, converted with ``torch.as_tensor``; selections take integers
only (:mod:`interp.indices`).

Selection is a boolean mask over the site's axes, and the new value is
``where(mask, new, old)``: untouched entries keep their exact bits, and the operation is
differentiable, so interventions and gradient capture combine.

Positions index the *padded* sequence of a plain forward; with left padding the last token is
position ``-1`` for every prompt, which is why negative positions are the natural way to address
prompts of mixed length. A forward that carries a :class:`~interp.positions.PositionFrame` (every
forward of generation) selects by absolute token position instead: position 0 is each row's first
real token, in the whole-prompt forward and in every one-token decode step alike.

``scope`` (``"prompt"``, ``"generated"`` or ``"all"``) restricts an intervention to prompt tokens or
generated ones. It is a field of every intervention rather than a wrapper around one because it is
part of the selection, like ``positions``: it combines into the same mask, serialises with the other
fields, and every kind gets it without a second class hierarchy. A plain forward holds only prompt
tokens, so a ``"generated"`` intervention selects nothing there.

A :class:`Replace` is saved by its function's import path. Loading imports nothing a file names
unless asked: functions decorated with :func:`register_replace_fn` are found by name, and any other
path is refused unless ``load_interventions(..., trust_code=True)``, since importing a module named
by a data file runs its code.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from jaxtyping import Bool, Float
from safetensors.torch import load_file, save_file

from interp.errors import InterventionError
from interp.indices import as_indices, check_indices
from interp.positions import SCOPES, PositionFrame, Scope
from interp.sites import Site

Selector = Sequence[int] | None


def _check_indices(indices: Sequence[int], size: int, what: str, site: Site) -> list[int]:
    """Integer ``indices`` into an axis of ``size`` (negative from the end), mapped onto ``0 .. size - 1``."""
    return check_indices(indices, size, what, f"at site {site.name!r}", negative=True, error=InterventionError)


def _axis_mask(indices: Selector, size: int, what: str, site: Site, device: torch.device) -> torch.Tensor | None:
    if indices is None:
        return None
    mask = torch.zeros(size, dtype=torch.bool, device=device)
    mask[_check_indices(indices, size, what, site)] = True
    return mask


@dataclass(frozen=True, kw_only=True)
class Intervention(ABC):
    """Base class: a site, a selection, and :meth:`new_value` to compute the replacement."""

    site: str
    positions: Selector = None
    heads: Selector = None
    rows: Selector = None
    scope: Scope = "all"

    kind: ClassVar[str] = "intervention"
    _tensor_fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        """The site's new value everywhere; :meth:`apply` keeps it only where selected."""

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise InterventionError(f"scope {self.scope!r} at {self.site!r} is not one of {list(SCOPES)}")
        for name in self._tensor_fields:
            raw = getattr(self, name)
            if not isinstance(raw, torch.Tensor):
                try:
                    object.__setattr__(self, name, torch.as_tensor(raw))
                except (TypeError, ValueError, RuntimeError) as error:
                    raise InterventionError(
                        f"{self.kind} at {self.site!r}: {name} of type {type(raw).__name__} is not a tensor and "
                        f"cannot become one ({error}); give a torch tensor, a numpy array or a nested list of numbers"
                    ) from None
        for what in ("positions", "heads", "rows"):
            indices = getattr(self, what)
            if indices is not None:
                object.__setattr__(
                    self, what, tuple(as_indices(indices, what, f"of {self.kind} at {self.site!r}", InterventionError))
                )

    def selection_mask(
        self, value: torch.Tensor, site: Site, frame: PositionFrame | None = None
    ) -> torch.Tensor | None:
        """Boolean mask broadcastable to ``value`` (None means the whole tensor).

        Without a frame, positions are columns of the forward; with one, absolute token positions.
        """
        if self.heads is not None and site.head_axis is None:
            raise InterventionError(f"heads= given for site {site.name!r}, which has no head axis ({site.axes})")
        axes = [(0, self.rows, "rows")]
        if frame is None:
            axes.append((site.pos_axis, self.positions, "positions"))
        if site.head_axis is not None:
            axes.append((site.head_axis, self.heads, "heads"))
        mask = self._position_mask(value, site, frame)
        for axis, indices, what in axes:
            axis_mask = _axis_mask(indices, value.shape[axis], what, site, value.device)
            if axis_mask is None:
                continue
            shape = [1] * value.ndim
            shape[axis] = value.shape[axis]
            axis_mask = axis_mask.view(shape)
            mask = axis_mask if mask is None else mask & axis_mask
        return mask

    def _position_mask(self, value: torch.Tensor, site: Site, frame: PositionFrame | None) -> torch.Tensor | None:
        """The (batch, pos) part of the mask that a frame or the scope decides (None: no restriction)."""
        shape = [1] * value.ndim
        if frame is None:
            if self.scope != "generated":
                return None
            return torch.zeros(shape, dtype=torch.bool, device=value.device)
        columns = frame.select(self.positions, self.scope, site.name).to(value.device)
        if columns.shape[1] != value.shape[site.pos_axis] or columns.shape[0] != value.shape[0]:
            raise InterventionError(
                f"{self.kind} at {site.name!r}: the forward's position frame covers {tuple(columns.shape)} "
                f"(batch, pos) but the site has shape {tuple(value.shape)} (axes {site.axes})"
            )
        shape[0], shape[site.pos_axis] = columns.shape
        return columns.view(shape)

    def apply(self, value: torch.Tensor, site: Site, frame: PositionFrame | None = None) -> torch.Tensor:
        """Return the site's value after this intervention (out of place).

        ``frame`` (given by framed forwards only) makes ``positions`` absolute token positions; a
        subclass that overrides this method takes it as its third argument to run in generation.
        """
        mask = self.selection_mask(value, site, frame)
        new = self.new_value(value, site)
        if new.shape != value.shape:
            new = _broadcast(new, value, site, self.kind)
        return new if mask is None else torch.where(mask, new, value)

    # --- serialisation -----------------------------------------------------------------------
    def to_dict(self, tensor_prefix: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON-able fields plus the tensors to store under ``tensor_prefix``."""
        record: dict[str, Any] = {"kind": self.kind}
        tensors: dict[str, torch.Tensor] = {}
        for f in dataclasses.fields(self):
            raw = getattr(self, f.name)
            if f.name in self._tensor_fields:
                key = f"{tensor_prefix}.{f.name}"
                tensors[key] = raw.detach().cpu().contiguous()
                record[f.name] = {"tensor": key}
            elif isinstance(raw, Sequence) and not isinstance(raw, str):
                record[f.name] = [int(i) for i in raw]
            else:
                record[f.name] = raw
        return record, tensors


def _broadcast(new: torch.Tensor, value: torch.Tensor, site: Site, kind: str) -> torch.Tensor:
    try:
        return new.expand_as(value)
    except RuntimeError:
        raise InterventionError(
            f"{kind} at {site.name!r}: a value of shape {tuple(new.shape)} does not broadcast to the "
            f"site's shape {tuple(value.shape)} (axes {site.axes})"
        ) from None


@dataclass(frozen=True, kw_only=True)
class Patch(Intervention):
    """Replace the selected entries by ``source`` (same shape as the site, or broadcastable)."""

    source: Float[torch.Tensor, "..."]
    kind: ClassVar[str] = "patch"
    _tensor_fields: ClassVar[tuple[str, ...]] = ("source",)

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        if self.source.ndim == value.ndim and self.source.shape[1:] != value.shape[1:]:
            raise InterventionError(
                f"patch at {site.name!r}: source shape {tuple(self.source.shape)} does not match the site's "
                f"shape {tuple(value.shape)} (axes {site.axes}); clean and corrupt prompts must have the same "
                "token length, and the source must be captured without a positions filter"
            )
        if self.source.ndim == value.ndim and self.source.shape[0] not in (1, value.shape[0]):
            raise InterventionError(
                f"patch at {site.name!r}: source batch {self.source.shape[0]} != run batch {value.shape[0]}"
            )
        return self.source.to(device=value.device, dtype=value.dtype)


@dataclass(frozen=True, kw_only=True)
class Add(Intervention):
    """Add ``scale * vector`` (a steering vector of the site's last axis, or any broadcastable)."""

    vector: Float[torch.Tensor, "..."]
    scale: float = 1.0
    kind: ClassVar[str] = "add"
    _tensor_fields: ClassVar[tuple[str, ...]] = ("vector",)

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        return value + self.scale * _broadcast(self.vector.to(device=value.device, dtype=value.dtype), value, site, self.kind)


@dataclass(frozen=True, kw_only=True)
class Scale(Intervention):
    """Multiply the selected entries by ``factor``."""

    factor: float
    kind: ClassVar[str] = "scale"

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        return value * self.factor


@dataclass(frozen=True, kw_only=True)
class Zero(Intervention):
    """Set the selected entries to zero (zero-ablation)."""

    kind: ClassVar[str] = "zero"

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        return torch.zeros_like(value)


@dataclass(frozen=True, kw_only=True)
class MeanAblate(Intervention):
    """Replace the selected entries by a mean activation (e.g. over a reference dataset).

    ``mean`` broadcasts to the site: shape ``(pos, ...)`` for a per-position mean, or the site's
    trailing axes for one mean everywhere. :meth:`from_activations` computes it.
    """

    mean: Float[torch.Tensor, "..."]
    kind: ClassVar[str] = "mean_ablate"
    _tensor_fields: ClassVar[tuple[str, ...]] = ("mean",)

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        return _broadcast(self.mean.to(device=value.device, dtype=value.dtype), value, site, self.kind)

    @classmethod
    def from_activations(
        cls, site: str, activations: torch.Tensor, per_position: bool = False, **selection: Any
    ) -> MeanAblate:
        """Mean over the batch (and over positions unless ``per_position``) of captured activations."""
        mean = activations.mean(dim=0) if per_position else activations.flatten(0, 1).mean(dim=0)
        return cls(site=site, mean=mean, **selection)


@dataclass(frozen=True, kw_only=True)
class Replace(Intervention):
    """Replace the selected entries by ``fn(value, site_name)``.

    ``fn`` receives a copy of the site's value, so it may edit it in place; only the selection
    (``positions``, ``heads``, ``rows``, ``scope``) takes the result.

    ``fn`` must be a module-level function for the intervention to be saved (it is stored by its
    import path); lambdas and closures work in memory but refuse to serialise. To load it back
    without ``trust_code=True``, decorate it with :func:`register_replace_fn`.
    """

    fn: Callable[[torch.Tensor, str], torch.Tensor]
    kind: ClassVar[str] = "replace"

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        """``fn`` of a copy of ``value``: an in-place edit by ``fn`` cannot reach unselected entries.

        Raises :class:`InterventionError` naming the site and function if ``fn`` returns anything
        but a tensor that broadcasts to the site's shape.
        """
        new = self.fn(value.clone(), site.name)
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        if not isinstance(new, torch.Tensor):
            raise InterventionError(
                f"Replace at {site.name!r}: function {name} returned {type(new).__name__}, not a tensor; it must "
                f"return the new value, a tensor of the site's shape {tuple(value.shape)} (axes {site.axes}) "
                "(an in-place edit such as v.zero_() returns v, so `return v` after editing)"
            )
        try:
            return new.expand_as(value)
        except RuntimeError:
            raise InterventionError(
                f"Replace at {site.name!r}: function {name} returned shape {tuple(new.shape)}, which does not "
                f"broadcast to the site's shape {tuple(value.shape)} (axes {site.axes}); return a tensor of that shape"
            ) from None

    def to_dict(self, tensor_prefix: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        path = _import_path(self.fn)
        if "<" in path:
            raise InterventionError(
                f"Replace at {self.site!r}: {path} is a lambda or closure and cannot be saved; "
                "use a module-level function"
            )
        record, tensors = Intervention.to_dict(dataclasses.replace(self, fn=_identity), tensor_prefix)
        record["fn"] = path
        return record, tensors


def _identity(value: torch.Tensor, site: str) -> torch.Tensor:
    return value


@dataclass(frozen=True, kw_only=True)
class MaskedPatch(Intervention):
    """Row ``r`` of the batch takes ``source[r]`` wherever ``mask[r]`` is True.

    ``source`` has the site's shape; ``mask`` is ``(rows, *site_axes)``, or ``(1, *site_axes)`` for
    one mask shared by every row (broadcastable along any axis). Each row of one forward can carry a
    different patch (another cell of the sweep, or the same cell for another example).
    """

    source: Float[torch.Tensor, "row ..."]
    mask: Bool[torch.Tensor, "row ..."]
    kind: ClassVar[str] = "masked_patch"
    _tensor_fields: ClassVar[tuple[str, ...]] = ("source", "mask")

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        return self.source

    def apply(self, value: torch.Tensor, site: Site, frame: PositionFrame | None = None) -> torch.Tensor:
        if frame is not None:
            raise InterventionError(
                f"masked patch at {site.name!r}: its mask addresses the columns of one forward, so it cannot run "
                "in a forward with absolute positions (generation); use Patch with positions= there"
            )
        if value.shape != self.source.shape or self.mask.shape[0] not in (1, value.shape[0]):
            raise InterventionError(
                f"masked patch at {site.name!r}: value {tuple(value.shape)} needs a source of the same shape "
                f"(got {tuple(self.source.shape)}) and a mask of 1 or {value.shape[0]} rows (got {tuple(self.mask.shape)})"
            )
        source = self.source.to(device=value.device, dtype=value.dtype)
        return torch.where(self.mask.to(value.device), source, value)


@dataclass(frozen=True, kw_only=True)
class ProjectOut(Intervention):
    """Remove (a multiple of) the component along ``direction``: ``x - scale * (x . u) u``, ``u = direction / |direction|``.

    ``scale=1`` is directional ablation: the selected activations end orthogonal to the direction
    (steering-vectors' ``ablation_operator``, refusal-direction ablation). The direction spans the
    site's trailing axes (``d_model``, or ``(heads, d_head)`` at ``z``); a zero direction changes nothing.
    """

    direction: Float[torch.Tensor, "..."]
    scale: float = 1.0
    kind: ClassVar[str] = "project_out"
    _tensor_fields: ClassVar[tuple[str, ...]] = ("direction",)

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        trailing = self.direction.ndim
        if trailing == 0 or tuple(self.direction.shape) != tuple(value.shape[value.ndim - trailing :]):
            raise InterventionError(
                f"project_out at {site.name!r}: direction of shape {tuple(self.direction.shape)} must match the "
                f"site's trailing axes {tuple(value.shape[1:])} (axes {site.axes})"
            )
        direction = self.direction.to(device=value.device, dtype=value.dtype)
        norm = direction.norm()
        if norm == 0:
            return value
        unit = direction / norm
        dims = tuple(range(value.ndim - trailing, value.ndim))
        along = (value * unit).sum(dim=dims, keepdim=True)
        return value - self.scale * along * unit


ReplaceFn = Callable[[torch.Tensor, str], torch.Tensor]
REPLACE_FNS: dict[str, ReplaceFn] = {}
"""Functions :func:`load_interventions` may name in a file, by import path (``module:qualname``)."""


def _import_path(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def register_replace_fn(fn: ReplaceFn) -> ReplaceFn:
    """Decorator: let saved :class:`Replace` interventions name ``fn`` and load without ``trust_code``.

    The function is registered under its import path, the name :func:`save_interventions` writes.
    """
    path = _import_path(fn)
    if "<" in path:
        raise InterventionError(f"{path} is a lambda or closure; only module-level functions can be registered")
    REPLACE_FNS[path] = fn
    return fn


@register_replace_fn
def negate(value: torch.Tensor, site: str) -> torch.Tensor:
    """Flip the sign of the selected entries (a built-in function for :class:`Replace`)."""
    return -value


def _replace_fn(path: str, trust_code: bool) -> ReplaceFn:
    """The function a saved Replace names: registered, or imported only when code is trusted."""
    if path in REPLACE_FNS:
        return REPLACE_FNS[path]
    if not trust_code:
        raise InterventionError(
            f"the interventions file names the function {path!r} for a Replace intervention, and it is not "
            "registered; loading it would import a module named by a data file, which runs its code. "
            "Either import the module that defines it and decorate the function with @interp.register_replace_fn "
            f"(registered: {sorted(REPLACE_FNS)}), or, if you trust the file, call "
            "load_interventions(path, trust_code=True)"
        )
    module, qualname = path.split(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


KINDS: dict[str, type[Intervention]] = {
    cls.kind: cls for cls in (Patch, Add, Scale, Zero, MeanAblate, Replace, MaskedPatch, ProjectOut)
}


def save_interventions(interventions: Sequence[Intervention], path: str | Path) -> None:
    """Write interventions to ``path`` (a directory): ``interventions.json`` + ``.safetensors``."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    records, tensors = [], {}
    for index, intervention in enumerate(interventions):
        record, stored = intervention.to_dict(f"i{index}")
        records.append(record)
        tensors.update(stored)
    save_file(tensors, str(directory / "interventions.safetensors"))
    (directory / "interventions.json").write_text(json.dumps(records, indent=2))


def load_interventions(path: str | Path, trust_code: bool = False) -> list[Intervention]:
    """Read interventions written by :func:`save_interventions`.

    A :class:`Replace` resolves its function from :data:`REPLACE_FNS` (see
    :func:`register_replace_fn`); any other import path raises :class:`InterventionError` unless
    ``trust_code`` is True, in which case the named module is imported (running its code).
    """
    directory = Path(path)
    tensors = load_file(str(directory / "interventions.safetensors"))
    loaded: list[Intervention] = []
    for record in json.loads((directory / "interventions.json").read_text()):
        record = dict(record)
        cls = KINDS[record.pop("kind")]
        for name, raw in list(record.items()):
            if isinstance(raw, dict) and "tensor" in raw:
                record[name] = tensors[raw["tensor"]]
        if cls is Replace:
            record["fn"] = _replace_fn(record["fn"], trust_code)
        loaded.append(cls(**record))
    return loaded
