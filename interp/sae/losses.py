"""SAE training losses: normalised reconstruction error, AuxK, the AFA norm term and L1.

Everything is measured relative to the data's own spread, so the same coefficients work whatever
the activations' scale (SmolLM2's middle residual has norms near 170, GPT-2's near 100, a
layer-normed input near ``sqrt(d_in)``):

* **FVU** (fraction of variance unexplained) ``= sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over the
  batch: OpenAI's normalised MSE and sparsify's training loss. Predicting the batch mean gives 1.
* **AuxK** (Gao et al.): latents that have not fired for ``dead_after_tokens`` tokens are "dead". The
  top ``k_aux`` of their pre-activations (ReLU'd) reconstruct the *detached* residual
  ``e = x - x_hat`` through their decoder rows (no bias); the term is that reconstruction's squared
  error over the same total variance, times ``min(n_dead / k_aux, 1)`` (sparsify's damping when few
  are dead) and ``auxk_coef`` (1/32 in the recipe). Gradients reach the dead latents' encoder
  columns and decoder rows, pulling them back towards directions the live latents miss.
* **AFA** (top-AFA, Lee et al.): ``afa_coeff * mean_b (||f_b|| - ||z_b||)^2`` (``f`` unscaled because
  decoder rows are unit-norm). The reference code takes ``z = x``, the (standardised) input; by
  default we take ``z = x - b_dec``, the vector the latents actually decompose and the norm the
  selection rule matches (``afa_target="input"`` restores the reference). The two agree when
  ``b_dec`` is small, as after the reference's per-token standardisation of GPT-2 activations; on
  SmolLM2's raw middle residual the mean has norm 128 against a median token norm of 168,
  the input target pulls ``||f||`` away from what reconstruction needs, and training stalled at FVU
  0.87 with L0 falling from 95 to 7 within 100 steps (``afa_coeff`` 1/32, ``k_max`` 128). The reference adds the term
  to a per-element MSE; we divide both by the per-element variance ``v = sum ||x - mean||^2 / (n d_in)``,
  which keeps the reference's ratio between the two terms while the main term becomes the FVU.
* **L1** (ReLU SAEs): ``l1_coeff * sum_{b,i} |f_bi| ||W_dec_i|| / (n * rms)`` where
  ``rms = sqrt(sum ||x - mean||^2 / n)``: SAELens's decoder-norm-weighted L1, divided by the data's
  RMS norm so that ``l1_coeff`` is scale-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.sae.activations import Latents
from interp.sae.kernels import sparse_decode, sparse_encode
from interp.sae.sae import SAE


@dataclass
class LossOutput:
    """The total loss and its parts for one SAE on one batch."""

    loss: Tensor
    fvu: Tensor
    auxk: Tensor
    afa: Tensor
    l1: Tensor
    latents: Latents


def auxk_loss(
    sae: SAE,
    pre: Tensor,
    x_cent: Tensor,
    residual: Tensor,
    total_variance: Tensor,
    dead: Tensor,
    k_aux: int,
) -> Tensor:
    """AuxK term (without its coefficient): dead latents reconstruct the detached residual."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return residual.new_zeros(())
    k = min(k_aux, n_dead)
    ranked = torch.where(dead.unsqueeze(0), pre, torch.full_like(pre, -torch.inf))
    indices = ranked.topk(k, dim=1, sorted=False).indices
    values = sparse_encode(x_cent, sae.W_enc, sae.b_enc, pre, indices).relu()
    estimate = sparse_decode(values, indices, sae.W_dec)
    scale = min(n_dead / k_aux, 1.0)
    return scale * (estimate - residual.detach()).pow(2).sum() / total_variance


def sae_loss(
    sae: SAE,
    x: Tensor,
    grad: Tensor | None = None,
    dead: Tensor | None = None,
    auxk_coef: float = 1 / 32,
    k_aux: int | None = None,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> LossOutput:
    """Loss of ``sae`` on a batch ``x (n, d_in)``; ``dead`` is a ``(d_sae,)`` mask of dead latents.

    ``reduce`` (data-parallel training) sums a tensor over every process's part of the batch: then
    ``x`` is this process's part, the normalisers (token count, mean, total variance) are the whole
    batch's, and each returned term is this part's share, so the parts' terms add up to the whole
    batch's (the per-token activations select per token, so nothing else depends on the split).
    """
    encoded = sae.encode_detailed(x, grad)
    latents = encoded.latents
    target = encoded.x_in
    residual = target - sae.decode_normalized(latents)
    if reduce is None:
        n_tokens = target.shape[0]
        centred = target - target.mean(dim=0)
    else:
        n_tokens = int(reduce(target.new_tensor(float(target.shape[0]))))
        centred = target - reduce(target.detach().sum(dim=0)) / n_tokens
    total_variance = centred.pow(2).sum() if reduce is None else reduce(centred.detach().pow(2).sum())
    total_variance = total_variance.clamp_min(torch.finfo(target.dtype).tiny)
    fvu = residual.pow(2).sum() / total_variance
    zero = fvu.new_zeros(())
    auxk = zero
    if dead is not None and auxk_coef > 0 and not sae.activation.dense:
        auxk = auxk_loss(sae, encoded.pre, encoded.x_cent, residual, total_variance, dead, k_aux or sae.d_in // 2)
    config = sae.config.activation
    afa = zero
    if config.kind == "top_afa" and config.afa_coeff > 0:
        per_element_variance = total_variance / (n_tokens * target.shape[1])
        z = encoded.x_cent if config.afa_target == "centred" else target
        norm_gap = latents.values.norm(dim=1) - z.norm(dim=1)
        afa = (norm_gap.pow(2).mean() if reduce is None else norm_gap.pow(2).sum() / n_tokens) / per_element_variance
    l1 = zero
    if config.kind == "relu" and config.l1_coeff > 0:
        rms = (total_variance / n_tokens).sqrt()
        l1 = (latents.values.abs() * sae.W_dec.norm(dim=1)).sum() / (n_tokens * rms)
    loss = fvu + auxk_coef * auxk
    if config.kind == "top_afa":
        loss = loss + config.afa_coeff * afa
    if config.kind == "relu":
        loss = loss + config.l1_coeff * l1
    return LossOutput(loss=loss, fvu=fvu, auxk=auxk, afa=afa, l1=l1, latents=latents)
