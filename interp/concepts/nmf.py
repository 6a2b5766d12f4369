"""Concepts without labels: non-negative matrix factorisation of a layer's activations (as in ICE).

ICE (Zhang et al., AAAI 2021) factorises a CNN layer's activations ``A ~ W H`` with ``W, H >= 0``:
the rows of ``H`` are non-negative concept directions and ``W`` says how much of each an example
holds. NMF needs non-negative data; ICE reads post-ReLU feature maps, which are. A language
model's residual stream is signed, so we **shift** each dimension by its minimum over the data
(``A + s`` with ``s = -min(A, axis=0)``, every entry then >= 0), factorise that with
``sklearn.decomposition.NMF`` (``init="nndsvda"``, seeded), and map back: the reconstruction of
an activation is ``W H - s``. Shifting rather than clipping keeps every value's information (a
clip at zero would drop half of a signed stream).

Fidelity, two ways:

* **reconstruction**: ``R^2 = 1 - ||A - (WH - s)||^2 / ||A - mean(A)||^2`` over the data;
* **prediction**: the target metric when each prompt's pooled activation at the layer is replaced
  by its reconstruction (the difference added at the pooled tokens, through the hook layer),
  against the unchanged metric: mean absolute change and correlation, and the mean KL of the
  next-token distributions.

:func:`top_examples` lists, per component, the examples that hold most of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from sklearn.decomposition import NMF
from torch import Tensor

from interp.concepts.reading import read_layers
from interp.concepts.selection import LAST_TOKEN, TokenSelector, range_mask
from interp.concepts.tcav import Target
from interp.errors import InvalidArgumentError
from interp.interventions import Add
from interp.model import Model
from interp.sites import site_name


@dataclass(frozen=True)
class NMFConcepts:
    """A factorisation ``A + shift ~ weights @ components`` of pooled activations at one site."""

    site: str
    components: Float[Tensor, "k d"]
    weights: Float[Tensor, "n k"]
    shift: Float[Tensor, " d"]
    r2: float

    def reconstruct(self, acts: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
        """Reconstructions of new activations: their NMF codes (H fixed) mapped back, minus the shift."""
        shifted = (acts.detach().double().cpu() + self.shift).clamp_min(0).numpy()
        model = NMF(n_components=self.components.shape[0], init="custom", max_iter=500)
        model.components_ = self.components.numpy()
        model.n_components_ = self.components.shape[0]
        codes = model.transform(shifted)
        return torch.from_numpy(codes @ self.components.numpy()) - self.shift


def nmf_concepts(acts: Float[Tensor, "n d"], site: str, n_components: int = 8, seed: int = 0) -> NMFConcepts:
    """Factorise shifted activations (see the module docstring)."""
    if acts.ndim != 2 or n_components < 1 or n_components > min(acts.shape):
        raise InvalidArgumentError(
            f"NMF needs (examples, dims) activations and 1 <= n_components <= {min(acts.shape) if acts.ndim == 2 else '?'}"
        )
    data = acts.detach().double().cpu()  # scikit-learn factorises on CPU
    shift = -data.min(0).values
    shifted = (data + shift).numpy()
    model = NMF(n_components=n_components, init="nndsvda", random_state=seed, max_iter=1000)
    weights = model.fit_transform(shifted)
    recon = torch.from_numpy(weights @ model.components_) - shift
    residual = float(((data - recon) ** 2).sum())
    total = float(((data - data.mean(0)) ** 2).sum())
    return NMFConcepts(site, torch.from_numpy(model.components_), torch.from_numpy(weights), shift, 1 - residual / total)


def top_examples(concepts: NMFConcepts, prompts: Sequence[str], top: int = 5) -> pd.DataFrame:
    """Per component, the ``top`` examples with the largest weight."""
    rows = []
    for component in range(concepts.weights.shape[1]):
        order = torch.argsort(concepts.weights[:, component], descending=True)[:top]
        for rank, index in enumerate(order.tolist()):
            rows.append({"component": component, "rank": rank, "example": index, "prompt": prompts[index],
                         "weight": float(concepts.weights[index, component])})
    return pd.DataFrame(rows)


def prediction_fidelity(
    model: Model, concepts: NMFConcepts, target: Target, layer: int, kind: str = "resid_post",
    selector: TokenSelector = LAST_TOKEN, batch_size: int = 16,
) -> dict[str, float]:
    """Target metric with pooled activations replaced by their NMF reconstruction, vs unchanged."""
    site = site_name(kind, layer)
    prompts = list(target.prompts)
    acts = read_layers(model, prompts, kind, [layer], selector, target.marks, batch_size)[0].double()
    delta = concepts.reconstruct(acts.cpu()) - acts.cpu()
    ranges = selector.ranges(model, prompts, target.marks)
    base, replaced, kls = [], [], []
    with torch.no_grad():
        for lo in range(0, len(prompts), batch_size):
            hi = min(lo + batch_size, len(prompts))
            batch = model.to_tokens(prompts[lo:hi])
            mask = range_mask(ranges[lo:hi], batch.lengths.cpu(), batch.shape[1]).double()
            # the pooled value is a mean over the range, so moving it by delta moves every token by delta
            vector = (mask[:, :, None] * delta[lo:hi, None, :]).to(model.device, model.dtype)
            rows = torch.arange(lo, hi)
            clean = model.run(batch)[:, -1].double().cpu()
            swapped = model.run(batch, [Add(site=site, vector=vector)])[:, -1].double().cpu()
            base.append(target.values(clean, rows))
            replaced.append(target.values(swapped, rows))
            log_p, log_q = swapped.log_softmax(-1), clean.log_softmax(-1)
            kls.append((log_p.exp() * (log_p - log_q)).sum(-1))
    before, after = torch.cat(base), torch.cat(replaced)
    corr = float(np.corrcoef(before.numpy(), after.numpy())[0, 1]) if len(before) > 1 else float("nan")
    return {"metric": float(before.mean()), "metric_reconstructed": float(after.mean()),
            "mean_abs_change": float((after - before).abs().mean()), "correlation": corr, "kl": float(torch.cat(kls).mean())}
