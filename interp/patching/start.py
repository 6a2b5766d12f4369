"""Where a patched forward can start: causality decides how much of the forward a cell needs.

Patching block ``L`` at position ``p`` cannot change anything in blocks before ``L``, nor any
position before ``p`` in any block. So the patched forward can start at block ``L`` from the
unpatched run's residual stream, and only over positions ``p..T-1``, with the unpatched keys and
values of positions ``0..p-1`` given as a KV cache. :func:`start_of` computes that (layer,
position) for a cell group; residual-stream cells are *entry* patches, written straight into the
residual that starts the forward.
"""

from __future__ import annotations

from interp.cells import CellGroup
from interp.errors import InterventionError
from interp.sites import Site


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
