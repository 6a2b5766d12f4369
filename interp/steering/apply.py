"""Steering as interventions: vectors added, directions ablated, SAE latents added or clamped.

Every function here returns plain :mod:`interp.interventions` values, so steering runs through
the same hook layer as patching, in a plain forward (``model.run``) or in generation
(``model.generate``) with a KV cache, and composes with any other intervention. Selection is the
interventions' own:

* ``scope``: ``"prompt"``, ``"generated"`` or ``"all"`` tokens;
* ``positions``: absolute token positions during generation (0 is each row's first real token,
  left padding does not shift it), so "from token N on" means the same token whether the forward
  is the prompt, a one-token decode step or a full recompute. This is where hook-based tools that
  count positions within each forward go wrong under a KV cache;
* ``rows``: batch rows, so one batch can carry several steering settings.

Strength is given in the units of :meth:`interp.vectors.LayerVectors.scaled`: ``"raw"`` multiplies
the stored vector, ``"norm"`` makes the added vector's length that fraction of the site's median
token norm. A strength of exactly 0 returns no intervention, so the model runs untouched
(bitwise identical to the unsteered model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from interp.errors import InterventionError, InvalidArgumentError
from interp.interventions import Add, Intervention, ProjectOut
from interp.positions import Scope
from interp.sites import Site
from interp.vectors import LayerVectors, StrengthUnit


def _where(scope: Scope, positions: Sequence[int] | None, rows: Sequence[int] | None) -> dict[str, Any]:
    return {"scope": scope, "positions": positions, "rows": rows}


def steer(
    vectors: LayerVectors,
    strength: float,
    unit: StrengthUnit = "raw",
    layers: Sequence[int] | None = None,
    scope: Scope = "all",
    positions: Sequence[int] | None = None,
    rows: Sequence[int] | None = None,
) -> list[Intervention]:
    """Add ``strength`` (in ``unit``) times each layer's vector at its site (all stored layers by default)."""
    if strength == 0:
        return []
    chosen = vectors.layers if layers is None else tuple(layers)
    return [
        Add(site=vectors.site(layer), vector=vectors.scaled(layer, strength, unit), **_where(scope, positions, rows))
        for layer in chosen
    ]


def ablate(
    vectors: LayerVectors,
    layers: Sequence[int] | None = None,
    scale: float = 1.0,
    scope: Scope = "all",
    positions: Sequence[int] | None = None,
    rows: Sequence[int] | None = None,
) -> list[Intervention]:
    """Project each layer's direction out of its site (``scale=1``: the activations end orthogonal to it)."""
    chosen = vectors.layers if layers is None else tuple(layers)
    return [
        ProjectOut(site=vectors.site(layer), direction=vectors.vector(layer), scale=scale, **_where(scope, positions, rows))
        for layer in chosen
    ]


def _sae_site(sae: Any, site: str | None) -> str:
    chosen = site or getattr(sae, "site", None)
    if not chosen:
        raise InvalidArgumentError("this SAE does not record the site it reads; pass site='blocks.L.hook_...'")
    return chosen


def _check_latent(sae: Any, latent: int) -> int:
    if isinstance(latent, bool) or not isinstance(latent, int) or not 0 <= latent < sae.d_sae:
        raise InvalidArgumentError(f"latent {latent!r} is not an index of this SAE's {sae.d_sae} latents")
    return latent


def sae_decoder_direction(sae: Any, latent: int) -> torch.Tensor:
    """The decoder row of ``latent`` (the direction its activation writes into the site)."""
    return sae.W_dec[_check_latent(sae, latent)].detach().clone()


def steer_latent(
    sae: Any,
    latent: int,
    strength: float,
    site: str | None = None,
    scope: Scope = "all",
    positions: Sequence[int] | None = None,
    rows: Sequence[int] | None = None,
) -> list[Intervention]:
    """Add ``strength`` times ``latent``'s decoder direction at the SAE's site (a serialisable :class:`Add`)."""
    if strength == 0:
        return []
    return [Add(site=_sae_site(sae, site), vector=sae_decoder_direction(sae, latent), scale=float(strength), **_where(scope, positions, rows))]


def clamp_latent(
    sae: Any,
    latent: int,
    value: float,
    site: str | None = None,
    scope: Scope = "all",
    positions: Sequence[int] | None = None,
    rows: Sequence[int] | None = None,
) -> list[Intervention]:
    """Set ``latent``'s activation to ``value`` at every selected token (see :class:`LatentClamp`)."""
    return [LatentClamp(site=_sae_site(sae, site), sae=sae, latent=_check_latent(sae, latent), value=float(value), **_where(scope, positions, rows))]


def _latent_activation(latents: Any, latent: int) -> torch.Tensor:
    if latents.indices is None:
        return latents.values[:, latent]
    return (latents.values * (latents.indices == latent)).sum(dim=-1)


@dataclass(frozen=True, kw_only=True)
class LatentClamp(Intervention):
    """Clamp one SAE latent: ``x + (value - f_latent(x)) * d_latent`` at each selected token.

    ``f_latent(x)`` is the latent's activation as the SAE encodes ``x`` (exact for every SAE kind,
    TopK included, because it runs the SAE's own encoder); ``d_latent`` is its decoder row, scaled
    back by the token's standard deviation when the SAE standardises its input. The rest of ``x``,
    the SAE's reconstruction error included, is kept: only the latent's contribution changes.
    It holds the SAE itself, so it lives in memory only; for a saved plan use :func:`steer_latent`.
    """

    sae: Any
    latent: int
    value: float
    kind: ClassVar[str] = "latent_clamp"

    def new_value(self, value: torch.Tensor, site: Site) -> torch.Tensor:
        with torch.no_grad():
            encoded = self.sae.encode_detailed(value.to(self.sae.device))
            current = _latent_activation(encoded.latents, self.latent)
            direction = self.sae.W_dec[self.latent].unsqueeze(0)
            if encoded.norm_stats is not None:
                direction = direction * encoded.norm_stats[1]
            shift = (self.value - current).unsqueeze(-1) * direction
        return value + shift.reshape(value.shape).to(device=value.device, dtype=value.dtype)

    def to_dict(self, tensor_prefix: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        raise InterventionError(
            f"a latent clamp at {self.site!r} holds its SAE in memory and cannot be saved; save the SAE "
            "(interp.sae.save_sae) and the latent index and value instead, or save a steer_latent() Add"
        )
