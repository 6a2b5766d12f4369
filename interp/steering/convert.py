"""Vectors from other tools: repeng's GGUF control vectors and steering-vectors' ``SteeringVector``.

**repeng / llama.cpp control vectors** (:func:`from_gguf`). ``ControlVector.export_gguf`` writes a
GGUF file of architecture ``controlvector`` with a ``controlvector.model_hint`` string and one
tensor ``direction.{layer}`` per layer, the vector added to the output of decoder block ``layer``
(the residual stream after the block: site kind ``resid_post``). The file is read with the ``gguf``
package's reader (tensors and key-value fields only; nothing is unpickled or executed).

**steering-vectors** (:func:`from_steering_vector`, :func:`to_steering_vector`). A
``SteeringVector`` holds ``layer_activations: {layer: tensor}`` and a ``layer_type``; its
``"decoder_block"`` is the block output (``resid_post``), ``"self_attn"`` the attention output
(``attn_out``) and ``"mlp"`` the MLP output (``mlp_out``). The two layer-norm types have no site
here and are refused. Conversion is in memory, both ways.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.errors import InvalidArgumentError
from interp.vectors import LayerVectors, VectorFormatError

SV_LAYER_TYPES = {"decoder_block": "resid_post", "self_attn": "attn_out", "mlp": "mlp_out"}


def _field_text(reader: Any, name: str) -> str | None:
    field = reader.get_field(name)
    if field is None or not len(field.parts):
        return None
    return bytes(field.parts[-1]).decode("utf-8", errors="replace")


def from_gguf(path: str | Path, model: str | None = None) -> LayerVectors:
    """Read a control vector GGUF file (repeng's ``export_gguf``, llama.cpp's ``--control-vector``)."""
    import gguf

    file = Path(path)
    if not file.is_file():
        raise VectorFormatError(f"{file} does not exist; give a .gguf control vector file")
    try:
        reader = gguf.GGUFReader(str(file))
    except (ValueError, OSError) as error:
        raise VectorFormatError(f"{file} is not a readable GGUF file ({error})") from None
    arch = _field_text(reader, "general.architecture")
    if arch != "controlvector":
        raise VectorFormatError(f"{file} has GGUF architecture {arch!r}, not 'controlvector'; it is not a control vector")
    directions: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        if not tensor.name.startswith("direction."):
            continue
        try:
            layer = int(tensor.name.split(".", 1)[1])
        except ValueError:
            raise VectorFormatError(f"{file}: tensor {tensor.name!r} is not named direction.<layer>") from None
        directions[layer] = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
    if not directions:
        raise VectorFormatError(f"{file} holds no direction.<layer> tensors")
    layers = sorted(directions)
    widths = {directions[layer].shape[0] for layer in layers}
    if len(widths) != 1:
        raise VectorFormatError(f"{file}: directions have different widths {sorted(widths)}")
    hint = _field_text(reader, "controlvector.model_hint")
    return LayerVectors(
        kind="resid_post",
        layers=tuple(layers),
        vectors=torch.from_numpy(np.stack([directions[layer] for layer in layers])),
        method="gguf",
        model=model or hint,
        meta={"source": "gguf", "model_hint": hint, "file": file.name},
    )


def from_steering_vector(vector: Any, model: str | None = None) -> LayerVectors:
    """A steering-vectors ``SteeringVector`` as :class:`LayerVectors` (block outputs become ``resid_post``)."""
    layer_type = getattr(vector, "layer_type", None)
    if layer_type not in SV_LAYER_TYPES:
        raise InvalidArgumentError(
            f"steering-vectors layer_type {layer_type!r} has no site here; supported: {sorted(SV_LAYER_TYPES)}"
        )
    activations = dict(vector.layer_activations)
    if not activations:
        raise InvalidArgumentError("the SteeringVector has no layer activations")
    layers = sorted(int(layer) for layer in activations)
    stacked = torch.stack([activations[layer].detach().float().cpu() for layer in layers])
    return LayerVectors(
        kind=SV_LAYER_TYPES[layer_type], layers=tuple(layers), vectors=stacked, method="steering_vectors", model=model,
        meta={"source": "steering_vectors", "layer_type": layer_type},
    )


def to_steering_vector(vectors: LayerVectors) -> Any:
    """A steering-vectors ``SteeringVector`` with the same vectors (needs the ``steering-vectors`` package)."""
    from steering_vectors import SteeringVector

    by_kind = {kind: layer_type for layer_type, kind in SV_LAYER_TYPES.items()}
    if vectors.kind not in by_kind:
        raise InvalidArgumentError(
            f"steering-vectors has no layer type for site kind {vectors.kind!r}; convertible kinds: {sorted(by_kind)}"
        )
    return SteeringVector(
        layer_activations={layer: vectors.vector(layer).clone() for layer in vectors.layers},
        layer_type=by_kind[vectors.kind],
    )
