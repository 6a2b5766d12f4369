"""Splicing an SAE into the model: an intervention that routes a site through the SAE.

Two modes, both as an :class:`~interp.interventions.Intervention` usable in ``model.hooks(...)``
and ``model.run(..., interventions=[...])`` alongside any other intervention:

* **Reconstruction** (``error_term=False``): the site's value is replaced by the SAE's
  reconstruction ``x_hat``. The change in the model's loss measures what the SAE misses; this is the
  forward behind "CE loss recovered" (:mod:`interp.sae.metrics`).
* **With the error term** (``error_term=True``): the site becomes
  ``x + (decode(edited latents) - decode(latents))``. With no edit the added term is exactly zero,
  so the forward is bit-for-bit unchanged, yet the latents sit on the computation path: an ``edit``
  can patch them (zero a latent, clamp one, copy values from another prompt) and only the edit's
  effect reaches the model, with the SAE's reconstruction error left in place (SAELens's
  ``use_error_term``, Marks et al.'s "error nodes").

``record=LatentRecord()`` exposes the latents of the last forward as a dense
``(batch, pos, d_sae)`` tensor; when gradients are on it is a leaf that requires grad, so
``torch.autograd.grad(metric, record.latents)`` gives each latent's attribution (gradient times
value, summed as you like). ``mask`` (``(batch, pos)`` booleans) limits the splice to some token
positions; elsewhere the site keeps its exact value. Use it to leave alone positions the SAE was
not trained on, such as the attention-sink first position.

The intervention holds a live module, so unlike the other interventions it is not saved with
:func:`interp.save_interventions` (save the SAE itself with :meth:`SAE.save`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InterventionError
from interp.interventions import Intervention
from interp.sae.activations import Latents
from interp.sae.sae import SAE
from interp.sites import Site


class LatentRecord:
    """Where a splice leaves the dense latents of the last forward (``latents``: ``(*lead, d_sae)``)."""

    def __init__(self) -> None:
        self.latents: Float[Tensor, "*lead d_sae"] | None = None


@dataclass(frozen=True, kw_only=True)
class SAESplice(Intervention):
    """Replace a site by an SAE's reconstruction, or keep it and expose/patch the SAE's latents."""

    sae: SAE
    error_term: bool = False
    edit: Callable[[Tensor], Tensor] | None = None
    record: LatentRecord | None = None
    mask: Bool[Tensor, "batch pos"] | None = None
    kind: ClassVar[str] = "sae_splice"

    def new_value(self, value: Tensor, site: Site) -> Tensor:
        if value.shape[-1] != self.sae.d_in or len(site.axes) != 3:
            raise InterventionError(
                f"SAE with d_in={self.sae.d_in} cannot be spliced at {site.name!r}, whose values have shape "
                f"{tuple(value.shape)} (axes {site.axes})"
            )
        encoded = self.sae.encode_detailed(value)
        clean = self.sae.decode(encoded.latents, encoded.norm_stats)
        recon = clean
        if self.edit is not None or self.record is not None:
            dense = encoded.latents.dense()
            if self.record is not None:
                dense = dense.detach().requires_grad_(torch.is_grad_enabled())
                self.record.latents = dense
            if self.edit is not None:
                dense = self.edit(dense)
            flat = Latents(values=dense.reshape(-1, self.sae.d_sae), indices=None, d_sae=self.sae.d_sae, lead=encoded.latents.lead)
            recon = self.sae.decode(flat, encoded.norm_stats)
        out = value + (recon - clean.detach()).to(value.dtype) if self.error_term else recon.to(value.dtype)
        if self.mask is not None:
            out = torch.where(self.mask.to(value.device).unsqueeze(-1), out, value)
        return out

    def to_dict(self, tensor_prefix: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
        raise InterventionError(
            "an SAE splice holds a live SAE and is not saved with the interventions; save the SAE with "
            "interp.sae.save_sae(sae, path) and rebuild the splice after loading it with interp.sae.load(path)"
        )


def splice(
    sae: SAE,
    error_term: bool = False,
    edit: Callable[[Tensor], Tensor] | None = None,
    record: LatentRecord | None = None,
    mask: Tensor | None = None,
    site: str | None = None,
) -> SAESplice:
    """An :class:`SAESplice` at the SAE's own site (or ``site``)."""
    where = site or sae.site
    if where is None:
        raise InterventionError("this SAE does not know its site; pass site='blocks.L.hook_resid_post' or similar")
    return SAESplice(site=where, sae=sae, error_term=error_term, edit=edit, record=record, mask=mask)
