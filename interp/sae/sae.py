"""The sparse autoencoder module: SAELens's parameters, a pluggable activation, a sparse decode.

An SAE rewrites an activation ``x`` (one token at one site, ``d_in`` numbers) as a sparse,
non-negative combination of ``d_sae`` learned directions plus a bias::

    pre   = (x - b_dec) @ W_enc + b_enc            # (d_sae,)  one score per latent
    f     = activation(pre)                        # (d_sae,)  mostly zeros
    x_hat = f @ W_dec + b_dec                      # (d_in,)

The parameters carry SAELens's names and shapes (``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``,
``W_dec [d_sae, d_in]``, ``b_dec [d_in]``), so an SAE saved here is a SAELens SAE on disk
(:mod:`interp.sae.io`). Decoder *rows* are the latents' directions in activation space; the
training recipes keep them at unit norm (:meth:`SAE.normalize_decoder`,
:meth:`SAE.project_decoder_grad`), which makes a latent's value its coefficient along a unit vector
and stops an L1 or norm penalty from being gamed by shrinking ``f`` and growing ``W_dec``.

``normalize_activations="layer_norm"`` standardises each token first (subtract its mean, divide by
its unbiased std + 1e-5) and undoes it after decoding (times std, plus mean): the top-AFA reference's ``input_unit_norm``
and SAELens's option of the same name.

The code is a :class:`~interp.sae.activations.Latents` (``values``/``indices`` of shape ``(n, k)``),
and :meth:`SAE.decode` sums ``k`` decoder rows per token (:func:`~interp.sae.kernels.sparse_decode`)
rather than multiplying a mostly-zero ``(n, d_sae)`` matrix; it switches to the dense matmul only
when a code is dense enough that the matmul is cheaper (ReLU SAEs early in training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from interp.config import ConfigError
from interp.errors import InvalidArgumentError
from interp.sae.activations import ActivationConfig, Activation, Latents, build_activation, k_too_large
from interp.sae.kernels import dense_decode, sparse_decode

DENSE_DECODE_FRACTION = 0.125  # decode densely when more than this fraction of latents is stored per token
LAYER_NORM_EPS = 1e-5


class SAEConfig(BaseModel):
    """What an SAE is: its sizes, activation, input handling and where it reads from."""

    model_config = ConfigDict(extra="forbid")

    d_in: int = Field(gt=0)
    d_sae: int = Field(gt=0)
    activation: ActivationConfig
    apply_b_dec_to_input: bool = True
    normalize_activations: Literal["none", "layer_norm"] = "none"
    site: str | None = Field(None, description="the site it reads, e.g. blocks.15.hook_resid_post")
    model: str | None = None
    dtype: str = "float32"
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _k_fits(self) -> SAEConfig:
        problem = k_too_large(self.activation, self.d_sae)
        if problem:
            raise ConfigError(problem)
        return self


@dataclass
class Encoded:
    """Everything an encode computed, for losses and metrics."""

    latents: Latents
    pre: Float[Tensor, "n d_sae"]
    x_in: Float[Tensor, "n d_in"]
    x_cent: Float[Tensor, "n d_in"]
    norm_stats: tuple[Tensor, Tensor] | None


class SAE(nn.Module):
    """A sparse autoencoder with SAELens parameter names and a pluggable activation."""

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        self.config = config
        dtype = getattr(torch, config.dtype)
        self.W_enc = nn.Parameter(torch.zeros(config.d_in, config.d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(config.d_sae, dtype=dtype))
        self.W_dec = nn.Parameter(torch.zeros(config.d_sae, config.d_in, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(config.d_in, dtype=dtype))
        self.activation: Activation = build_activation(config.activation, config.d_sae)
        if not self.activation.uses_encoder_bias:
            self.b_enc.requires_grad_(False)

    def __repr__(self) -> str:
        return (
            f"SAE({self.config.activation!r}, d_in={self.d_in}, d_sae={self.d_sae}, site={self.config.site!r}, "
            f"normalize={self.config.normalize_activations})"
        )

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, config: SAEConfig, seed: int = 0) -> SAE:
        """A freshly initialised SAE: random unit decoder rows, encoder = decoder transpose (tied init)."""
        sae = cls(config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            bound = 1 / math.sqrt(config.d_in)
            W = torch.empty(config.d_sae, config.d_in).uniform_(-bound, bound, generator=generator)
            W = W / W.norm(dim=1, keepdim=True)
            sae.W_dec.copy_(W)
            sae.W_enc.copy_(W.t())
        return sae

    @property
    def d_in(self) -> int:
        return self.config.d_in

    @property
    def d_sae(self) -> int:
        return self.config.d_sae

    @property
    def site(self) -> str | None:
        return self.config.site

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    # --- the forward maths -------------------------------------------------------------------
    def normalize_input(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        if self.config.normalize_activations == "none":
            return x, None
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        std = centred.std(dim=-1, keepdim=True)
        return centred / (std + LAYER_NORM_EPS), (mean, std)

    def encode_detailed(self, x: Float[Tensor, "*lead d_in"], grad: Tensor | None = None) -> Encoded:
        """Encode and keep the intermediate values (pre-activations, centred input, norm stats)."""
        if x.device != self.W_enc.device:
            raise InvalidArgumentError(
                f"the SAE is on {self.W_enc.device} but its input is on {x.device}; put the SAE on the model's "
                "device: sae.to(model.device), or interp.sae.load(path, device=...)"
            )
        lead = tuple(x.shape[:-1])
        x = x.reshape(-1, self.d_in).to(self.W_enc.dtype)
        if grad is not None:
            grad = grad.reshape(-1, self.d_in)
        x_in, stats = self.normalize_input(x)
        x_cent = x_in - self.b_dec if self.config.apply_b_dec_to_input else x_in
        if self.activation.dense:
            pre = x_cent @ self.W_enc + self.b_enc
        else:
            with torch.no_grad():
                pre = torch.addmm(self.b_enc, x_cent, self.W_enc)
        latents = self.activation.encode(pre, x_cent, self, grad)
        latents.lead = lead
        return Encoded(latents=latents, pre=pre.detach(), x_in=x_in, x_cent=x_cent, norm_stats=stats)

    def encode(self, x: Float[Tensor, "*lead d_in"], grad: Tensor | None = None) -> Latents:
        """The latent code of ``x`` (any leading axes; ``grad`` only matters to g-SAEs)."""
        return self.encode_detailed(x, grad).latents

    def decode_normalized(self, latents: Latents) -> Float[Tensor, "n d_in"]:
        """Decode in the SAE's (possibly standardised) input space, without undoing the norm."""
        if latents.indices is None:
            return latents.values.to(self.W_dec.dtype) @ self.W_dec + self.b_dec
        if latents.values.shape[1] > DENSE_DECODE_FRACTION * self.d_sae:
            return dense_decode(latents.values, latents.indices, self.W_dec) + self.b_dec
        return sparse_decode(latents.values, latents.indices, self.W_dec) + self.b_dec

    def decode(
        self, latents: Latents, norm_stats: tuple[Tensor, Tensor] | None = None
    ) -> Float[Tensor, "*lead d_in"]:
        """Reconstruction from a code; ``norm_stats`` (from :meth:`encode_detailed`) undoes layer_norm."""
        out = self.decode_normalized(latents)
        if norm_stats is not None:
            mean, std = norm_stats
            out = out * std + mean  # as SAELens and the top-AFA reference: eps only on the way in
        return out.reshape(*latents.lead, self.d_in) if latents.lead else out

    def forward(self, x: Float[Tensor, "*lead d_in"], grad: Tensor | None = None) -> Float[Tensor, "*lead d_in"]:
        """Reconstruct ``x``."""
        encoded = self.encode_detailed(x, grad)
        return self.decode(encoded.latents, encoded.norm_stats).to(x.dtype)

    # --- decoder constraint ------------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove from each decoder row's gradient its component along the row (tangent to the sphere)."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad.sub_(parallel * self.W_dec)
