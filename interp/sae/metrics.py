"""SAE quality metrics, computed on held-out token rows and accumulated in float64.

Definitions (docs/methods.md, SAE metrics), over the tokens an SAE
is meant for (special tokens and the attention-sink first position excluded):

* **L0**: mean number of latents that fired per token, with its std and 5/50/95th percentiles
  (the spread matters for BatchTopK and top-AFA, whose count varies).
* **FVU** ``= sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` with the mean over the whole evaluation
  set, from streaming sums (not a per-batch average, which SAELens flags as biased); explained
  variance is ``1 - FVU``. Also the MSE (summed over dimensions), cosine(x, x_hat), and the L2 ratio
  ``E ||x_hat|| / ||x||`` (below 1: shrinkage).
* **Dead / dense**: fraction of latents that never fired on the evaluation tokens (the token count
  is reported with it: a latent silent on 8,000 tokens may fire on the next million), and the
  fractions firing on more than 1% and 10% of tokens; **density** per latent.
* **CE loss recovered** (SAELens/SAEBench ``ce_loss_score``):
  ``(CE_zero - CE_sae) / (CE_zero - CE_clean)`` where CE_sae splices the reconstruction in at the
  SAE's positions, CE_zero zero-ablates the site there, and CE_clean is the unmodified model.
  1 means the SAE loses nothing; 0 means it is as bad as deleting the site. Also ``CE_error``: the
  splice with the error term added back, a check that must equal CE_clean.
* **AFA norm check** (top-AFA paper): with quasi-orthogonal unit decoder rows, the norm of the
  scaled latents ``f~_i = f_i ||W_dec_i||`` should match ``||x - b_dec||``. We report the relative
  gap ``E |‖f~‖ - ‖x - b_dec‖| / E ‖x - b_dec‖`` and the paper's lower bound on quasi-orthogonality
  ``eps_LBO = |‖x‖^2 - ‖f~‖^2 - ‖b_dec‖^2| / ((d_sae - 1)(‖f~‖^2 + ‖b_dec‖^2))`` (``b_dec`` as one more
  coordinate, x in the SAE's input space), averaged over tokens. They are computed for every SAE,
  so top-AFA and TopK can be compared at matched L0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.activations import ALL, extract
from interp.interventions import Replace
from interp.sae.sae import SAE
from interp.sae.splice import SAESplice
from interp.tokenize import TokenBatch


@dataclass
class SAEMetrics:
    """Evaluation numbers of one SAE (see the module docstring for definitions)."""

    n_tokens: int
    l0: float
    l0_std: float
    l0_p5: float
    l0_p50: float
    l0_p95: float
    fvu: float
    explained_variance: float
    mse: float
    cosine: float
    l2_ratio: float
    dead_fraction: float
    dense_1pct_fraction: float
    dense_10pct_fraction: float
    afa_norm_gap: float
    eps_lbo: float
    ce_clean: float | None = None
    ce_sae: float | None = None
    ce_zero: float | None = None
    ce_error: float | None = None
    ce_recovered: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


class _Accumulator:
    """Streaming sums for one SAE."""

    def __init__(self, sae: SAE) -> None:
        self.sae = sae
        self.n = 0
        self.sum_x = torch.zeros(sae.d_in, dtype=torch.float64)
        self.sum_sq = 0.0
        self.sum_err = 0.0
        self.sum_cos = 0.0
        self.sum_ratio = 0.0
        self.sum_gap = 0.0
        self.sum_target = 0.0
        self.sum_eps = 0.0
        self.l0: list[Tensor] = []
        self.fired = torch.zeros(sae.d_sae, dtype=torch.float64)

    @torch.no_grad()
    def add(self, x: Float[Tensor, "n d"]) -> None:
        sae = self.sae
        x = x.to(sae.device, sae.W_enc.dtype)
        encoded = sae.encode_detailed(x)
        latents = encoded.latents
        x_hat = sae.decode(latents, encoded.norm_stats)
        x64, err = x.double(), (x - x_hat).double()
        self.n += x.shape[0]
        self.sum_x += x64.sum(0).cpu()
        self.sum_sq += float(x64.pow(2).sum())
        self.sum_err += float(err.pow(2).sum())
        self.sum_cos += float(torch.nn.functional.cosine_similarity(x64, x_hat.double(), dim=1).sum())
        self.sum_ratio += float((x_hat.double().norm(dim=1) / x64.norm(dim=1).clamp_min(1e-12)).sum())
        self.l0.append(latents.l0().cpu())
        self.fired += latents.fired().double().cpu()
        dense = latents.dense().reshape(-1, sae.d_sae).double()
        scaled = (dense * sae.W_dec.double().norm(dim=1)).norm(dim=1)
        target = encoded.x_cent.double().norm(dim=1)
        self.sum_gap += float((scaled - target).abs().sum())
        self.sum_target += float(target.sum())
        b2 = float(sae.b_dec.double().pow(2).sum())
        total = scaled.pow(2) + b2
        z2 = encoded.x_in.double().pow(2).sum(dim=1)
        eps = (z2 - total).abs() / ((sae.d_sae - 1) * total.clamp_min(1e-12))
        self.sum_eps += float(eps.sum())

    def result(self) -> tuple[SAEMetrics, Tensor]:
        n = max(self.n, 1)
        mean = self.sum_x / n
        variance = self.sum_sq - n * float(mean.pow(2).sum())
        l0 = torch.cat(self.l0) if self.l0 else torch.zeros(1)
        p5, p50, p95 = np.percentile(l0.numpy(), [5, 50, 95])
        density = self.fired / n
        fvu = self.sum_err / variance if variance > 0 else float("nan")
        metrics = SAEMetrics(
            n_tokens=self.n,
            l0=float(l0.mean()),
            l0_std=float(l0.std()) if l0.numel() > 1 else 0.0,
            l0_p5=float(p5),
            l0_p50=float(p50),
            l0_p95=float(p95),
            fvu=fvu,
            explained_variance=1 - fvu,
            mse=self.sum_err / n,
            cosine=self.sum_cos / n,
            l2_ratio=self.sum_ratio / n,
            dead_fraction=float((density == 0).double().mean()),
            dense_1pct_fraction=float((density > 0.01).double().mean()),
            dense_10pct_fraction=float((density > 0.1).double().mean()),
            afa_norm_gap=self.sum_gap / max(self.sum_target, 1e-12),
            eps_lbo=self.sum_eps / n,
        )
        return metrics, density.float()


def reconstruction_metrics(sae: SAE, batches: Sequence[Tensor] | Tensor) -> tuple[SAEMetrics, Tensor]:
    """L0, FVU, dead/dense fractions, AFA check and per-latent density over activation batches ``(n, d_in)``."""
    accumulator = _Accumulator(sae)
    for x in [batches] if isinstance(batches, Tensor) else batches:
        accumulator.add(x.reshape(-1, sae.d_in))
    return accumulator.result()


def _next_token_ce(logits: Tensor, ids: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).double(), ids[:, 1:].flatten().to(logits.device), reduction="sum"
    )


def _zero_at(mask: Tensor):
    def zero(value: Tensor, site: str) -> Tensor:
        return torch.where(mask.to(value.device).unsqueeze(-1), torch.zeros_like(value), value)

    return zero


@torch.no_grad()
def evaluate(
    model,
    saes: dict[str, SAE],
    ids: Tensor,
    keep: Tensor,
    batch_rows: int = 8,
    acts: dict[str, Tensor] | None = None,
    ce: bool = True,
) -> dict[str, tuple[SAEMetrics, Tensor]]:
    """All metrics of each SAE on token rows ``ids`` (keep: positions the SAEs are meant for).

    ``acts`` (site -> ``(rows, pos, d)``) saves recomputing the clean activations when the caller
    has them (e.g. from a disk cache). Returns ``{name: (metrics, density)}``.
    """
    sites = sorted({sae.site for sae in saes.values()})
    ids, keep = ids.cpu(), keep.cpu()  # token rows may come from the model's device; the activations are read on CPU
    if acts is None:
        read = extract(model, ids, sites, ALL, max_rows=batch_rows)
        acts = {s: read[s].float().reshape(*ids.shape, -1) for s in sites}
    results: dict[str, tuple[SAEMetrics, Tensor]] = {}
    for name, sae in saes.items():
        results[name] = reconstruction_metrics(sae, acts[sae.site][keep])
    if not ce:
        return results
    sums = {"clean": 0.0, **{f"zero:{s}": 0.0 for s in sites}}
    for name in saes:
        sums[f"sae:{name}"] = 0.0
        sums[f"error:{name}"] = 0.0
    count = 0
    for start in range(0, ids.shape[0], batch_rows):
        rows = ids[start : start + batch_rows]
        mask = keep[start : start + batch_rows]
        batch = TokenBatch.from_ids(rows.to(model.device))
        sums["clean"] += float(_next_token_ce(model.forward(batch), rows))
        for s in sites:
            sums[f"zero:{s}"] += float(_next_token_ce(model.run(batch, [Replace(site=s, fn=_zero_at(mask))]), rows))
        for name, sae in saes.items():
            spliced = model.run(batch, [SAESplice(site=sae.site, sae=sae, mask=mask)])
            sums[f"sae:{name}"] += float(_next_token_ce(spliced, rows))
            kept = model.run(batch, [SAESplice(site=sae.site, sae=sae, mask=mask, error_term=True)])
            sums[f"error:{name}"] += float(_next_token_ce(kept, rows))
        count += rows.shape[0] * (rows.shape[1] - 1)
    for name, sae in saes.items():
        metrics, _ = results[name]
        clean, zero = sums["clean"] / count, sums[f"zero:{sae.site}"] / count
        metrics.ce_clean = clean
        metrics.ce_zero = zero
        metrics.ce_sae = sums[f"sae:{name}"] / count
        metrics.ce_error = sums[f"error:{name}"] / count
        metrics.ce_recovered = (zero - metrics.ce_sae) / (zero - clean) if zero != clean else float("nan")
    return results
