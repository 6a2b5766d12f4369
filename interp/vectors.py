"""Directions in activation space, one per layer at one site kind: the value steering and CAVs share.

A steering vector, a concept activation vector (CAV) and a function vector are the same object: for
each of some layers, a vector in the space of one site kind (``resid_post``, ``attn_out``, ...),
together with where it came from. :class:`LayerVectors` holds exactly that, so a CAV can be added
as a steering vector and a steering vector probed as a CAV without conversion.

**Strength in two units.** A raw scale multiplies the stored vector as it is. Raw scales mean
different things at different layers and in different models, because the residual stream's norm
grows with depth; so each vector also records the median token norm of its site on the prompts it
was built from (``token_norms``), and :meth:`LayerVectors.scaled` accepts a strength as a fraction
of that norm: ``scaled(0.5, unit="norm")`` adds a vector whose length is half the typical token's.

**On disk** (one directory, nothing executable): ``vectors.safetensors`` holds ``vectors``
(layer x site dims, float32) and ``token_norms`` (layer) when known; ``vectors.json`` holds the site
kind, layers, method, model identity, data hash and any JSON-able metadata (held-out accuracy,
token selection, ...). :func:`load_vectors` checks that the two agree and names the file and field
when they do not.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from interp.errors import InterpError, InvalidArgumentError
from interp.runs.atomic import atomic_write
from interp.sites import BLOCK, site_name

FORMAT_VERSION = 1
TENSOR_FILE = "vectors.safetensors"
META_FILE = "vectors.json"
StrengthUnit = Literal["raw", "norm"]
STRENGTH_UNITS: tuple[str, ...] = ("raw", "norm")


class VectorFormatError(InterpError, ValueError):
    """A vectors directory is missing a file or a field, or its files disagree."""


def data_hash(items: Iterable[Any]) -> str:
    """A short stable hash of JSON-able training items (prompts, pairs, labels), stored with a vector."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class LayerVectors:
    """One direction per layer at one site kind, with its provenance.

    ``vectors[i]`` is the direction at ``layers[i]``; its shape is the site's trailing shape
    (``d_model`` for residual and output sites, ``d_mlp`` for neurons, ``(heads, d_head)`` for ``z``).
    """

    kind: str
    layers: tuple[int, ...]
    vectors: Float[Tensor, "layer *dims"]
    method: str
    model: Mapping[str, Any] | str | None = None
    data_hash: str | None = None
    token_norms: Float[Tensor, " layer"] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in BLOCK:
            raise InvalidArgumentError(
                f"site kind {self.kind!r} is not a block site kind; use one of {', '.join(BLOCK)}"
            )
        layers = tuple(int(layer) for layer in self.layers)
        if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
            raise InvalidArgumentError(f"layers {list(self.layers)} must be distinct non-negative integers")
        object.__setattr__(self, "layers", layers)
        if not isinstance(self.vectors, Tensor) or self.vectors.ndim < 2 or self.vectors.shape[0] != len(layers):
            shape = tuple(self.vectors.shape) if isinstance(self.vectors, Tensor) else type(self.vectors).__name__
            raise InvalidArgumentError(
                f"vectors must be a tensor of shape (layers={len(layers)}, *site dims); got {shape}"
            )
        if not torch.isfinite(self.vectors).all():
            raise InvalidArgumentError("vectors contain NaN or infinity; rebuild them from finite activations")
        if self.token_norms is not None and tuple(self.token_norms.shape) != (len(layers),):
            raise InvalidArgumentError(
                f"token_norms must have one entry per layer ({len(layers)}); got shape {tuple(self.token_norms.shape)}"
            )

    # --- reading ------------------------------------------------------------------------------
    def site(self, layer: int) -> str:
        """The full site name of this kind at ``layer`` (e.g. ``blocks.3.hook_resid_post``)."""
        self._row(layer)
        return site_name(self.kind, layer)

    def vector(self, layer: int) -> Float[Tensor, "*dims"]:
        """The stored (raw) direction at ``layer``."""
        return self.vectors[self._row(layer)]

    def unit(self, layer: int) -> Float[Tensor, "*dims"]:
        """The direction at ``layer`` scaled to length 1 (a zero vector stays zero)."""
        vector = self.vector(layer)
        norm = vector.norm()
        return vector / norm if norm > 0 else vector

    def scaled(self, layer: int, strength: float, unit: StrengthUnit = "raw") -> Float[Tensor, "*dims"]:
        """The vector to add at ``layer`` for ``strength`` in ``unit``.

        ``raw``: ``strength * vector``. ``norm``: a vector along the direction whose length is
        ``strength`` times the site's median token norm at that layer (needs ``token_norms``).
        """
        if not math.isfinite(strength):
            raise InvalidArgumentError(f"strength {strength!r} is not a finite number")
        if unit == "raw":
            return strength * self.vector(layer)
        if unit == "norm":
            if self.token_norms is None:
                raise InvalidArgumentError(
                    "strength in unit 'norm' needs the site's token norms, which these vectors do not record; "
                    "use unit='raw' or rebuild the vectors from prompts"
                )
            return strength * float(self.token_norms[self._row(layer)]) * self.unit(layer)
        raise InvalidArgumentError(f"strength unit {unit!r} is unknown; use one of {', '.join(STRENGTH_UNITS)}")

    def raw_strength(self, layer: int, strength: float, unit: StrengthUnit) -> float:
        """``strength`` in ``unit`` expressed as a raw scale of the stored vector at ``layer``."""
        norm = float(self.vector(layer).norm())
        if norm == 0:
            return 0.0
        return float(self.scaled(layer, strength, unit).norm()) / norm * (1 if strength >= 0 else -1)

    def select(self, layers: Sequence[int]) -> LayerVectors:
        """The same vectors restricted to ``layers`` (in the given order)."""
        rows = [self._row(layer) for layer in layers]
        norms = self.token_norms[rows] if self.token_norms is not None else None
        return replace(self, layers=tuple(layers), vectors=self.vectors[rows], token_norms=norms)

    def __add__(self, other: LayerVectors) -> LayerVectors:
        """Compose two vector sets at the same site kind and layers by summation."""
        if not isinstance(other, LayerVectors):
            return NotImplemented
        if other.kind != self.kind or other.layers != self.layers:
            raise InvalidArgumentError(
                f"cannot add vectors at {other.kind} layers {list(other.layers)} to vectors at "
                f"{self.kind} layers {list(self.layers)}; select the same layers first"
            )
        return replace(
            self,
            vectors=self.vectors + other.vectors.to(self.vectors),
            method=f"sum({self.method},{other.method})",
            data_hash=None,
            meta={"parts": [dict(self.meta), dict(other.meta)]},
        )

    def _row(self, layer: int) -> int:
        try:
            return self.layers.index(int(layer))
        except ValueError:
            raise InvalidArgumentError(
                f"layer {layer} has no vector; these vectors cover layers {list(self.layers)}"
            ) from None

    # --- disk ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the vectors to directory ``path`` (created; files replaced atomically)."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"vectors": self.vectors.detach().to("cpu", torch.float32).contiguous()}
        if self.token_norms is not None:
            tensors["token_norms"] = self.token_norms.detach().to("cpu", torch.float32).contiguous()
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "layers": list(self.layers),
            "shape": list(self.vectors.shape[1:]),
            "method": self.method,
            "model": self.model,
            "data_hash": self.data_hash,
            "meta": dict(self.meta),
        }
        text = json.dumps(meta, indent=2, sort_keys=True, default=_json_default)
        atomic_write(directory / TENSOR_FILE, lambda tmp: save_file(tensors, str(tmp)))
        atomic_write(directory / META_FILE, lambda tmp: tmp.write_text(text))
        return directory


def load_vectors(path: str | Path, device: torch.device | str = "cpu") -> LayerVectors:
    """Read vectors written by :meth:`LayerVectors.save` (never executes anything from the files)."""
    directory = Path(path)
    tensor_file, meta_file = directory / TENSOR_FILE, directory / META_FILE
    for file in (tensor_file, meta_file):
        if not file.is_file():
            raise VectorFormatError(f"{file} does not exist; save vectors with LayerVectors.save(directory)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as error:
        raise VectorFormatError(f"{meta_file} is not valid JSON ({error})") from None
    for key in ("kind", "layers", "shape", "method"):
        if key not in meta:
            raise VectorFormatError(f"{meta_file} has no {key!r} field")
    version = meta.get("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise VectorFormatError(
            f"{meta_file} has format_version {version}, newer than this interp reads ({FORMAT_VERSION}); upgrade interp"
        )
    with safe_open(str(tensor_file), framework="pt", device="cpu") as handle:
        names = set(handle.keys())
        if "vectors" not in names:
            raise VectorFormatError(f"{tensor_file} has no 'vectors' tensor")
        vectors = handle.get_tensor("vectors")
        norms = handle.get_tensor("token_norms") if "token_norms" in names else None
    expected = (len(meta["layers"]), *meta["shape"])
    if tuple(vectors.shape) != expected:
        raise VectorFormatError(
            f"{tensor_file}: 'vectors' has shape {tuple(vectors.shape)} but {meta_file} says {expected}"
        )
    try:
        return LayerVectors(
            kind=meta["kind"],
            layers=tuple(meta["layers"]),
            vectors=vectors.to(device),
            method=meta["method"],
            model=meta.get("model"),
            data_hash=meta.get("data_hash"),
            token_norms=norms.to(device) if norms is not None else None,
            meta=meta.get("meta") or {},
        )
    except InvalidArgumentError as error:
        raise VectorFormatError(f"{directory}: {error}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise InvalidArgumentError(
        f"metadata value of type {type(value).__name__} cannot be stored as JSON; store numbers, strings and lists"
    )

