"""LRP propagation rules as modified backward passes, forward values untouched.

Layer-wise relevance propagation in gradient-times-input form (Arras et al. 2025; docs/methods.md,
RelP) runs an ordinary backward pass in which some operations pass back a *different* local
derivative. Each rule here returns a tensor with the forward value of the real operation, bit for
bit, and the rule's derivative in the backward pass, through one identity:

    out = y.detach() + (s - s.detach())

where ``y`` is the real output and ``s`` a *surrogate* whose gradient is the rule's. In the
forward pass ``s - s.detach()`` is exactly 0; in the backward pass only ``s`` carries gradient.

The rules (the RelP fork's defaults plus the AttnLRP/CP-LRP attention options, docs/methods.md, LRP rules):

* **LN-rule** (norms): the normalising scale ``1/std`` (LayerNorm: also the centring stays live)
  or ``rsqrt(mean(x^2) + eps)`` (RMSNorm) is a constant. RMSNorm then conserves relevance exactly,
  ``sum x * dx = sum y * dy``; LayerNorm does up to its bias: ``sum x * dx = sum (y - b) * dy``.
* **Identity-rule** (element-wise nonlinearities: GELU, SiLU, ...): the derivative is
  ``act(x) / x`` (0 where ``x = 0``), so ``x * dx = act(x) * dy`` element by element: relevance
  passes through unchanged. The fork divides by ``x + 1e-6 sign(x)``; the exact ratio keeps
  conservation exact and is finite since ``|act(x) / x|`` is bounded for these activations.
* **Half-rule** (the gated MLP product ``act(gate) * up``): the product passes back half its
  gradient, so each factor receives exactly half the relevance.
* **Attention** (:mod:`interp.attribution.attention`): ``"gradient"`` (ordinary; the fork's
  default), ``"cp"`` (CP-LRP / AH-rule: the pattern is a constant, relevance flows through the
  values only) or ``"attnlrp"`` (uniform rule on both attention matrix products).

Linear layers, the unembedding and residual additions keep their gradient (the epsilon-/0-rule in
gradient-times-input form). Gemma 2's soft-capping ``c tanh(x / c)`` keeps its gradient too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from interp.arch import Norm
from interp.attribution.attention import ATTENTION_RULES, AttentionRule
from interp.errors import InvalidArgumentError


@dataclass(frozen=True)
class RelPRules:
    """Which LRP rules a RelP backward pass uses.

    Attributes:
        norm: LN-rule on every LayerNorm / RMSNorm (incl. final, q/k and Gemma's post norms).
        activation: Identity-rule on the MLP nonlinearity.
        gated_product: Half-rule on ``act(gate) * up`` (gated MLPs only).
        attention: ``"gradient"``, ``"cp"`` or ``"attnlrp"`` (see the module docstring).
    """

    norm: bool = True
    activation: bool = True
    gated_product: bool = True
    attention: AttentionRule = "gradient"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_RULES:
            raise InvalidArgumentError(f"unknown attention rule {self.attention!r}; choose one of {list(ATTENTION_RULES)}")

    @classmethod
    def none(cls) -> RelPRules:
        """Every rule off: the ordinary gradient, so RelP equals AtP."""
        return cls(norm=False, activation=False, gated_product=False, attention="gradient")

    @classmethod
    def conservative(cls) -> RelPRules:
        """LN + Identity + Half + CP attention: relevance is conserved exactly through bias-free blocks."""
        return cls(attention="cp")

    @property
    def is_identity(self) -> bool:
        return not (self.norm or self.activation or self.gated_product) and self.attention == "gradient"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def swap_gradient(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, ``surrogate``'s gradient in the backward pass."""
    return value.detach() + (surrogate - surrogate.detach())


def identity_rule(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Element-wise ``y = act(x)`` with derivative ``act(x) / x`` (Identity-rule)."""
    ratio = torch.where(x == 0, torch.zeros_like(y), y / torch.where(x == 0, torch.ones_like(x), x))
    return swap_gradient(y, x * ratio.detach())


def half_rule(product: torch.Tensor) -> torch.Tensor:
    """A two-factor product passing back half its gradient (uniform rule)."""
    half = product / 2
    return product.detach() + (half - half.detach())


def _rms_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps).detach()


def norm_rule(norm: Norm, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LN-rule for a LayerNorm or an RMSNorm (:class:`~interp.arch.Norm`): the scale is a constant."""
    module = norm.module
    if norm.kind == "layernorm":
        centred = x - x.mean(-1, keepdim=True)
        surrogate = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + norm.eps).detach()
        if module.weight is not None:
            surrogate = surrogate * module.weight
        return swap_gradient(y, surrogate)
    x32 = x.float()
    normed = x32 * _rms_scale(x32, norm.eps)
    if norm.kind == "rmsnorm_plus_one":
        surrogate = (normed * (1.0 + module.weight.float())).to(y.dtype)
    else:
        surrogate = module.weight * normed.to(x.dtype)
    return swap_gradient(y, surrogate)
