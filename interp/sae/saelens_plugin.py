"""A SAELens plugin that teaches SAELens the ``top_afa`` architecture, so it loads our top-AFA SAEs.

SAELens dispatches on ``cfg.json["architecture"]`` through a registry that third parties extend with
``sae_lens.register_sae_class``; an unknown name raises ``KeyError: 'top_afa'``. Importing this
module registers an inference class that computes exactly what :class:`interp.sae.activations.TopAFA`
computes: ``pre = ReLU((x - b_dec) @ W_enc + b_enc)`` (``b_enc`` is zero for top-AFA), latents
ranked by ``(pre_i ||W_dec_i||)^2``, and the smallest prefix whose cumulative norm is closest to
``||x - b_dec||`` kept (capped at ``k_max``; with ``k_max = d_sae`` the last cumulative sum is
replaced by 1e8 as in the reference code).

It imports only ``torch`` and ``sae_lens`` (never ``interp``), because SAELens pins
transformer-lens < 4 and usually lives in another environment: load it there by file path, as
``scripts/sae_lens_interop.py`` does, or ``import interp.sae.saelens_plugin`` where both packages
are installed together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sae_lens import register_sae_class
from sae_lens.registry import SAE_CLASS_REGISTRY
from sae_lens.saes.sae import SAE, SAEConfig
from torch import nn

ARCHITECTURE = "top_afa"
LAST_CUMSUM = 1e8


@dataclass
class TopAFASAEConfig(SAEConfig):
    """SAELens config of a top-AFA SAE; ``k_max`` caps the latents kept per token (None: d_sae)."""

    k_max: int | None = None

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class TopAFASAE(SAE[TopAFASAEConfig]):
    """Inference-only top-AFA SAE for SAELens."""

    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.b_enc = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = self.process_sae_in(x)
        pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc).relu()
        k_max = min(self.cfg.k_max or self.cfg.d_sae, self.cfg.d_sae)
        flat = pre.reshape(-1, self.cfg.d_sae)
        scores = (flat * self.W_dec.norm(dim=1)).square()
        top = scores.topk(k_max, dim=1, sorted=True)
        cumulative = top.values.cumsum(dim=1)
        if k_max == self.cfg.d_sae:
            cumulative[:, -1] = LAST_CUMSUM
        target = sae_in.reshape(-1, sae_in.shape[-1]).norm(dim=1, keepdim=True)
        k_star = (cumulative.sqrt() - target).abs().argmin(dim=1) + 1
        keep = torch.arange(k_max, device=pre.device).unsqueeze(0) < k_star.unsqueeze(1)
        out = torch.zeros_like(flat).scatter_add(1, top.indices, flat.gather(1, top.indices) * keep.to(flat.dtype))
        return self.hook_sae_acts_post(out.reshape(pre.shape))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)
        out = self.run_time_activation_norm_fn_out(out)
        return self.reshape_fn_out(out, self.d_head)


if ARCHITECTURE not in SAE_CLASS_REGISTRY:
    register_sae_class(ARCHITECTURE, TopAFASAE, TopAFASAEConfig)
