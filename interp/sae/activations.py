"""SAE activation functions: which latents fire for a token, and with what value.

A sparse autoencoder encodes an activation ``x`` as ``pre = (x - b_dec) @ W_enc + b_enc`` (one
pre-activation per latent) and then an *activation function* keeps a few latents. They differ in
how "a few" is decided:

* **TopK** (Gao et al. 2024): the ``k`` largest pre-activations, ReLU'd. Exactly ``k`` fire per
  token (fewer only if fewer than ``k`` are positive), so L0 is set, not learned.
* **BatchTopK** (Bussmann et al.): the ``k * n`` largest over the whole batch of ``n`` tokens, so
  easy tokens use fewer latents and hard ones more, with mean L0 = k. Inference cannot depend on the
  batch, so training tracks a global threshold (an EMA of the smallest kept value) and inference
  keeps ``pre > threshold``; this is a JumpReLU, which is how SAELens stores it.
* **top-AFA** (Lee et al. 2025): no ``k``. With (quasi-)orthogonal unit decoder rows,
  ``||x - b_dec||`` is approximately the norm of the latent vector, so each token keeps the
  smallest prefix of its latents (sorted by ``(pre_i ||W_dec_i||)^2``) whose cumulative norm comes
  closest to ``||x - b_dec||``: ``k* = argmin_j |sqrt(c_j) - ||x - b_dec|| | + 1`` with ``c_j`` the
  cumulative sum. The reference code uses no encoder bias and sorts all ``d_sae`` entries; we cap
  the sort at ``k_max`` (``k_max = d_sae`` reproduces the reference exactly, including its rule that
  ``c_{d_sae}`` is replaced by 1e8 so that all latents are never chosen).
* **g-SAE** (Olmo et al. 2025, gradient-aware TopK): select the top ``k`` of
  ``z * (1 + beta * |u|)`` where ``z = ReLU(pre)`` and ``u = W_dec @ grad`` is the directional
  derivative of the language-model loss along each decoder row; the kept *values* stay ``z``. So
  gradients change only *which* latents fire, preferring small-but-consequential ones. Without a
  gradient (inference) it is plain TopK. The paper's code is unpublished: this is the reading in
  docs/methods.md, g-SAE (no normalisation of ``|u|``).
* **ReLU** (+ an L1 penalty in the loss): the classic dense-then-sparsified SAE.
* **JumpReLU**: ``ReLU(pre) * (pre > threshold)`` with a per-latent threshold; inference form of
  SAELens's JumpReLU and BatchTopK SAEs, so their files load here.

Every selection returns a :class:`Latents`: ``(values, indices)`` of shape ``(n, k)`` (padding
entries have value 0), or a dense ``(n, d_sae)`` matrix for ReLU. Values are gathered from the dense
pre-activation through :func:`interp.sae.kernels.sparse_encode`, so only selected entries carry
gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import torch
from jaxtyping import Float, Int
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from interp.sae.kernels import sparse_encode

if TYPE_CHECKING:
    from interp.sae.sae import SAE

AFA_LAST_CUMSUM = 1e8  # the reference's value for c_{d_sae}, so that k* = d_sae is never chosen


@dataclass
class Latents:
    """A batch of latent codes: sparse ``(values, indices)`` of shape ``(n, k)``, or dense ``(n, d_sae)``.

    Sparse padding entries have value 0 (their index is arbitrary). ``lead`` is the shape of the
    token axes the input had before flattening (e.g. ``(batch, pos)``).
    """

    values: Float[Tensor, "n k"]
    indices: Int[Tensor, "n k"] | None
    d_sae: int
    lead: tuple[int, ...] = ()

    @property
    def is_sparse(self) -> bool:
        return self.indices is not None

    def dense(self) -> Float[Tensor, "*lead d_sae"]:
        """The full latent matrix (zeros where nothing fired)."""
        if self.indices is None:
            out = self.values
        else:
            out = torch.zeros((self.values.shape[0], self.d_sae), dtype=self.values.dtype, device=self.values.device)
            out = out.scatter_add(1, self.indices, self.values)
        return out.reshape(*self.lead, self.d_sae) if self.lead else out

    def l0(self) -> Float[Tensor, " n"]:
        """Number of latents that fired (value != 0) per token."""
        return (self.values != 0).sum(dim=-1).to(torch.float32)

    def fired(self) -> Float[Tensor, " d_sae"]:
        """How many tokens of this batch each latent fired on."""
        if self.indices is None:
            return (self.values != 0).sum(dim=0).to(torch.float32)
        counts = torch.zeros(self.d_sae, dtype=torch.float32, device=self.values.device)
        return counts.index_add_(0, self.indices.reshape(-1), (self.values != 0).reshape(-1).to(torch.float32))


# --- configs (the serialisable description of an activation and its training hyperparameters) ----


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopKConfig(_Config):
    """TopK: exactly ``k`` latents per token."""

    kind: Literal["topk"] = "topk"
    k: int = Field(gt=0)


class BatchTopKConfig(_Config):
    """BatchTopK: ``k * n`` latents per batch of ``n`` tokens; a threshold at inference."""

    kind: Literal["batchtopk"] = "batchtopk"
    k: int = Field(gt=0)
    threshold_lr: float = Field(0.01, gt=0, le=1)


class TopAFAConfig(_Config):
    """top-AFA: the count per token follows the norm rule; ``afa_coeff`` weights the norm loss."""

    kind: Literal["top_afa"] = "top_afa"
    k_max: int | None = Field(None, gt=0, description="cap on latents per token (None: d_sae, the reference)")
    afa_coeff: float = Field(1 / 32, ge=0)
    afa_target: Literal["centred", "input"] = Field(
        "centred", description="norm the AFA loss matches: ||x - b_dec|| (as the selection rule) or ||x|| (reference code)"
    )


class GSAEConfig(_Config):
    """g-SAE: TopK over ``z * (1 + beta |W_dec grad|)``."""

    kind: Literal["gsae"] = "gsae"
    k: int = Field(gt=0)
    beta: float = Field(1.0, ge=0)


class ReLUConfig(_Config):
    """ReLU with an L1 penalty ``l1_coeff * sum_i |f_i| ||W_dec_i||`` in the loss."""

    kind: Literal["relu"] = "relu"
    l1_coeff: float = Field(1e-3, ge=0)


class JumpReLUConfig(_Config):
    """JumpReLU with a per-latent threshold (inference only: loaded SAELens JumpReLU/BatchTopK SAEs)."""

    kind: Literal["jumprelu"] = "jumprelu"


ActivationConfig = Annotated[
    TopKConfig | BatchTopKConfig | TopAFAConfig | GSAEConfig | ReLUConfig | JumpReLUConfig,
    Field(discriminator="kind"),
]


# --- activation modules -------------------------------------------------------------------------


def _compact(mask: torch.Tensor, score: torch.Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the True entries of each row, padded to the row maximum; and their keep mask."""
    width = max(1, int(mask.sum(dim=1).max().item())) if mask.numel() else 1
    width = min(width, mask.shape[1])
    ranked = torch.where(mask, score, torch.full_like(score, -torch.inf))
    top = ranked.topk(width, dim=1)
    return top.indices, torch.isfinite(top.values)


class Activation(nn.Module):
    """Base class: choose indices from the (gradient-free) pre-activations; values are gathered.

    ``dense`` activations (ReLU) get a pre-activation that carries gradient and return it whole.
    """

    kind: ClassVar[str]
    uses_encoder_bias: ClassVar[bool] = True
    dense: ClassVar[bool] = False

    def __init__(self, config: _Config, d_sae: int) -> None:
        super().__init__()
        self.config = config
        self.d_sae = d_sae

    def select(
        self, pre: Float[Tensor, "n d_sae"], x_cent: Float[Tensor, "n d_in"], sae: SAE, grad: Tensor | None
    ) -> tuple[Int[Tensor, "n k"], torch.Tensor | None]:
        """Indices of the latents to keep per row, and a keep mask for padded rows (or None)."""
        raise NotImplementedError

    def encode(
        self, pre: Float[Tensor, "n d_sae"], x_cent: Float[Tensor, "n d_in"], sae: SAE, grad: Tensor | None
    ) -> Latents:
        """Select (without gradient), then gather the kept values (with gradient where needed)."""
        with torch.no_grad():
            indices, keep = self.select(pre, x_cent, sae, grad)
        values = sparse_encode(x_cent, sae.W_enc, sae.b_enc, pre, indices).relu()
        if keep is not None:
            values = values * keep.to(values.dtype)
        return Latents(values=values, indices=indices, d_sae=self.d_sae)

    def update(self, latents: Latents) -> None:
        """Update running state after a training step (default: none)."""

    def inference_k(self) -> int | None:
        """A fixed per-token k, where the activation has one."""
        return None


class TopK(Activation):
    kind = "topk"

    def select(self, pre: Tensor, x_cent: Tensor, sae: SAE, grad: Tensor | None) -> tuple[Tensor, None]:
        return pre.topk(min(self.config.k, self.d_sae), dim=1, sorted=False).indices, None

    def inference_k(self) -> int | None:
        return self.config.k


class BatchTopK(Activation):
    """Training: top ``k * n`` of the batch. Eval mode (``sae.eval()``): ``pre > threshold``."""

    kind = "batchtopk"

    def __init__(self, config: BatchTopKConfig, d_sae: int) -> None:
        super().__init__(config, d_sae)
        self.register_buffer("threshold", torch.zeros(()))

    def select(self, pre: Tensor, x_cent: Tensor, sae: SAE, grad: Tensor | None) -> tuple[Tensor, Tensor]:
        relu = pre.relu()
        if self.training:
            n = pre.shape[0]
            total = min(self.config.k * n, relu.numel())
            flat = relu.reshape(-1).topk(total, sorted=False).indices
            mask = torch.zeros(relu.numel(), dtype=torch.bool, device=pre.device)
            mask[flat] = True
            mask = mask.reshape(relu.shape) & (relu > 0)
        else:
            mask = pre > self.threshold
        return _compact(mask, relu)

    @torch.no_grad()
    def update(self, latents: Latents) -> None:
        positive = latents.values[latents.values > 0]
        if positive.numel():
            lr = self.config.threshold_lr
            self.threshold.mul_(1 - lr).add_(lr * positive.min().to(self.threshold.dtype))


class TopAFA(Activation):
    """Adaptive k from the approximate-feature-activation norm rule (see the module docstring)."""

    kind = "top_afa"
    uses_encoder_bias = False

    def select(self, pre: Tensor, x_cent: Tensor, sae: SAE, grad: Tensor | None) -> tuple[Tensor, Tensor]:
        k_max = min(self.config.k_max or self.d_sae, self.d_sae)
        scores = (pre.relu() * sae.W_dec.norm(dim=1)).square()
        top = scores.topk(k_max, dim=1, sorted=True)
        cumulative = top.values.cumsum(dim=1)
        if k_max == self.d_sae:
            cumulative[:, -1] = AFA_LAST_CUMSUM
        target = x_cent.norm(dim=1, keepdim=True)
        k_star = (cumulative.sqrt() - target).abs().argmin(dim=1) + 1
        keep = torch.arange(k_max, device=pre.device).unsqueeze(0) < k_star.unsqueeze(1)
        return top.indices, keep


class GSAE(Activation):
    """TopK on ``z (1 + beta |W_dec grad|)``; plain TopK when no gradient is given."""

    kind = "gsae"

    def select(self, pre: Tensor, x_cent: Tensor, sae: SAE, grad: Tensor | None) -> tuple[Tensor, None]:
        z = pre.relu()
        score = z if grad is None or self.config.beta == 0 else z * (1 + self.config.beta * (grad.to(z.dtype) @ sae.W_dec.t()).abs())
        return score.topk(min(self.config.k, self.d_sae), dim=1, sorted=False).indices, None

    def inference_k(self) -> int | None:
        return self.config.k


class ReLU(Activation):
    """Dense ReLU; the L1 penalty lives in the loss."""

    kind = "relu"
    dense = True

    def encode(self, pre: Tensor, x_cent: Tensor, sae: SAE, grad: Tensor | None) -> Latents:
        return Latents(values=pre.relu(), indices=None, d_sae=self.d_sae)


class JumpReLU(Activation):
    """``ReLU(pre) * (pre > threshold)`` with a per-latent threshold."""

    kind = "jumprelu"

    def __init__(self, config: JumpReLUConfig, d_sae: int) -> None:
        super().__init__(config, d_sae)
        self.register_buffer("threshold", torch.zeros(d_sae))

    def select(self, pre: Tensor, x_cent: Tensor, sae: SAE, grad: Tensor | None) -> tuple[Tensor, Tensor]:
        return _compact(pre > self.threshold, pre)


ACTIVATIONS: dict[str, type[Activation]] = {cls.kind: cls for cls in (TopK, BatchTopK, TopAFA, GSAE, ReLU, JumpReLU)}


def k_too_large(config: _Config, d_sae: int) -> str | None:
    """Why ``config``'s per-token count cannot work with ``d_sae`` latents (``k``/``k_max`` above it), or None."""
    for field in ("k", "k_max"):
        value = getattr(config, field, None)
        if value is not None and value > d_sae:
            return f"activation {config.kind} {field} ({value}) is larger than d_sae ({d_sae}); use {field} <= {d_sae} or a wider SAE"
    return None


def build_activation(config: _Config, d_sae: int) -> Activation:
    """The activation module for a config."""
    return ACTIVATIONS[config.kind](config, d_sae)
