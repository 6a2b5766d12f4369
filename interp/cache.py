"""The activation cache: what a forward pass captured, and the gradients of a metric at each site.

A cache maps site names to tensors (batch first, on the device and in the dtype asked for). When
the capture was limited to some positions, the position axis holds only those, in the order given,
and :attr:`ActivationCache.positions` says which they were. Gradients, when asked for, live in
:attr:`ActivationCache.grads` under the same names and with the same shapes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence

import torch
from jaxtyping import Float

from interp.errors import UnknownSiteError
from interp.sites import parse_site, site_name


class ActivationCache(Mapping[str, torch.Tensor]):
    """Captured activations (and optional gradients) keyed by site name."""

    def __init__(
        self,
        activations: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor] | None = None,
        positions: Sequence[int] | None = None,
    ) -> None:
        self._activations = activations
        self.grads: dict[str, torch.Tensor] = grads or {}
        self.positions = None if positions is None else list(positions)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._activations:
            close = difflib.get_close_matches(name, list(self._activations), n=3, cutoff=0.5)
            raise UnknownSiteError(
                f"site {name!r} is not in this cache ({len(self._activations)} sites captured)"
                + (f"; did you mean {close}?" if close else "; capture it with sites=[...]")
            )
        return self._activations[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._activations)

    def __len__(self) -> int:
        return len(self._activations)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} sites, grads={bool(self.grads)})"

    def stack(self, kind: str, layers: Sequence[int] | None = None) -> Float[torch.Tensor, "layer ..."]:
        """Stack one site kind over layers, e.g. ``cache.stack("resid_post")`` -> (layer, batch, ...)."""
        if layers is None:
            parsed = (parse_site(name) for name in self._activations)
            layers = sorted(site.layer for site in parsed if site is not None and site.kind == kind and site.layer is not None)
        if not layers:
            raise UnknownSiteError(f"no per-layer {kind!r} sites in this cache")
        return torch.stack([self[site_name(kind, layer)] for layer in layers])

    def to(self, device: torch.device | str) -> ActivationCache:
        """A copy of the cache on another device."""
        return ActivationCache(
            {k: v.to(device) for k, v in self._activations.items()},
            {k: v.to(device) for k, v in self.grads.items()},
            self.positions,
        )
