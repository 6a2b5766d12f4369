"""Reading the pooled activations of many prompts at every layer of one site kind, in one pass.

:func:`read_layers` asks :func:`interp.activations.extract` for every requested layer's site in the
same forward of each batch, so the cost of CAVs for all layers is one forward over the data (cut
off after the deepest layer read), not one per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.activations import extract
from interp.concepts.selection import TokenSelector
from interp.errors import InvalidArgumentError
from interp.model import Model
from interp.sites import site_name


def layer_sites(model: Model, kind: str, layers: Sequence[int] | None) -> tuple[list[int], list[str]]:
    """The layers (default: all) and their site names at ``kind``; unknown layers are refused."""
    n_layers = model.dims.n_layers
    chosen = list(range(n_layers)) if layers is None else [int(layer) for layer in layers]
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad or not chosen or len(set(chosen)) != len(chosen):
        raise InvalidArgumentError(
            f"layers {chosen} must be distinct layers of this {n_layers}-layer model (0..{n_layers - 1})"
        )
    return chosen, [site_name(kind, layer) for layer in chosen]


def read_layers(
    model: Model,
    prompts: Sequence[str],
    kind: str,
    layers: Sequence[int],
    selector: TokenSelector,
    marks: Sequence[str | None] | None = None,
    batch_size: int = 32,
) -> Float[Tensor, "layer n *dims"]:
    """Pooled activations of ``prompts`` at ``kind`` for every layer, as one ``(layer, n, ...)`` tensor."""
    _, sites = layer_sites(model, kind, layers)
    acts = extract(model, list(prompts), sites, selector.span_mean(model, prompts, marks), max_rows=batch_size)
    return torch.stack([acts[site] for site in sites])
