"""GCAV: one global concept vector aligned across layers, and TGCAV (He et al., ICCV 2025).

Per-layer CAVs of one concept often disagree: TCAV at layer 5 says the concept matters, at layer
6 it does not. GCAV learns one *global* concept vector from which a CAV for every layer is
decoded, so the concept's sensitivity is measured consistently across depth. Our version, for
the residual-stream CAVs of a language model, keeps the paper's structure with small linear parts:

1. **Shared space.** Per layer ``l``, a linear encoder ``E_l`` (site dims -> ``dim``) and decoder
   ``D_l`` map unit CAVs into one space and back; trained with a reconstruction term
   ``1 - cos(D_l E_l u, u)``, a cross-layer **InfoNCE** term (cosine similarities at temperature
   0.5; the positive of a concept's embedding at one layer is the same concept at the other
   layers, the negatives are the other concepts and the random CAVs), and a **consistency** term
   ``1 - cos(E_l u, z_0)`` to the embedding before alignment, weighted InfoNCE : consistency = 1 : 3
   as the paper does (Adam; lr 1e-2 where the paper uses 1e-3, since our maps start from each
   layer's own CAV subspace rather than at random, and need fewer steps).
2. **Fusion.** Attention pooling over layers (a learned query, key and value projections, softmax
   weights across layers) gives one global embedding ``g`` per concept; it is trained with
   ``3 * Var_l(soft TCAV_l) + 1 * mean_l(1 - cos(D_l g, u_l))``, where the soft TCAV score at a
   layer is the mean over target examples of ``sigmoid(T cos(grad, D_l g))`` and the temperature
   ``T`` grows by 1.2 per step up to 1000, approaching the hard sign count (the paper adds a
   straight-through hard indicator; we anneal only).
3. **TGCAV** is TCAV with the decoded global CAV ``D_l g`` at each layer. We report the variance of
   TCAV scores across layers before (per-layer CAVs) and after (TGCAV), as the paper does.

Differences from the paper: linear maps instead of MLP autoencoders and a transformer aligner,
attention pooling rather than the transformer fusion, and soft TCAV without the straight-through
step. Everything is seeded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from interp.concepts.tcav import Sensitivities, tcav_scores
from interp.errors import InvalidArgumentError
from interp.vectors import LayerVectors


@dataclass(frozen=True)
class GCAVResult:
    """Global CAVs (decoded into every layer) and TCAV across layers before and after."""

    cavs: dict[str, LayerVectors]
    table: pd.DataFrame  # concept, layer, tcav_layer, tcav_global, cos (decoded vs per-layer CAV)
    variance: pd.DataFrame  # concept, variance_before, variance_after


def _units(cavs: LayerVectors, layers: Sequence[int]) -> Tensor:
    return torch.stack([cavs.unit(layer).flatten().double() for layer in layers])


def _info_nce(z: Tensor, labels: Tensor, temperature: float = 0.5) -> Tensor:
    """InfoNCE over all embeddings: positives share a label (same concept, another layer)."""
    z = torch.nn.functional.normalize(z, dim=-1)
    sim = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool)
    sim = sim.masked_fill(eye, float("-inf"))
    positive = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has = positive.any(1) & (labels >= 0)
    return -(log_prob.masked_fill(~positive, 0).sum(1)[has] / positive.sum(1)[has]).mean()


def _fuse(z: Tensor, query: Tensor, keys: Tensor, values: Tensor, dec: Tensor) -> Tensor:
    """Attention pooling of a concept's layer embeddings ``z`` into one, decoded into every layer."""
    weights = torch.softmax((z @ keys) @ query / z.shape[1] ** 0.5, dim=0)
    return torch.einsum("k,lkd->ld", weights @ (z @ values), dec)


def gcav(
    concepts: Mapping[str, LayerVectors],
    negatives: Sequence[LayerVectors],
    sens: Sensitivities,
    dim: int = 64,
    steps: int = 200,
    fusion_steps: int = 100,
    seed: int = 0,
    lr: float = 1e-2,
) -> GCAVResult:
    """Align each concept's per-layer CAVs into a global CAV and compare TCAV before and after."""
    layers = list(sens.layers)
    if len(layers) < 2:
        raise InvalidArgumentError("GCAV aligns CAVs across layers; give at least two layers")
    if not concepts:
        raise InvalidArgumentError("GCAV needs at least one concept")
    generator = torch.Generator().manual_seed(seed)
    sets = [*concepts.values(), *negatives]
    units = torch.stack([_units(cavs, layers) for cavs in sets])  # (set, layer, d)
    labels = torch.tensor([i if i < len(concepts) else -1 - i for i in range(len(sets))])
    _, n_layers, d = units.shape
    # start from each layer's own CAV subspace: E_l = the top right-singular vectors of the layer's
    # CAVs (exact reconstruction while there are no more CAVs than ``dim``), D_l = E_l^T
    basis = torch.zeros(n_layers, d, dim, dtype=torch.float64)
    for layer in range(n_layers):
        _, _, vh = torch.linalg.svd(units[:, layer], full_matrices=False)
        k = min(dim, vh.shape[0])
        basis[layer, :, :k] = vh[:k].T
    enc = torch.nn.Parameter(basis.clone())
    dec = torch.nn.Parameter(basis.transpose(1, 2).clone())
    with torch.no_grad():
        z0 = torch.einsum("sld,ldk->slk", units, enc)
    optimiser = torch.optim.Adam([enc, dec], lr=lr)
    flat_labels = labels.repeat_interleave(n_layers)
    for _ in range(steps):
        z = torch.einsum("sld,ldk->slk", units, enc)
        recon = torch.einsum("slk,lkd->sld", z, dec)
        loss = (
            (1 - torch.nn.functional.cosine_similarity(recon, units, dim=-1)).mean()
            + _info_nce(z.reshape(-1, dim), flat_labels)
            + 3 * (1 - torch.nn.functional.cosine_similarity(z, z0, dim=-1)).mean()
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    enc, dec = enc.detach(), dec.detach()
    grads = sens.grads.flatten(2).double()  # (layer, n, d)
    grad_units = torch.nn.functional.normalize(grads, dim=-1)
    global_cavs, rows, variance = {}, [], []
    for index, (name, cavs) in enumerate(concepts.items()):
        z = torch.einsum("ld,ldk->lk", units[index], enc)
        # a zero query weights the layers equally and identity values keep the embeddings: fusion
        # starts from the mean of the aligned embeddings
        query = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        keys = torch.nn.Parameter(torch.randn(dim, dim, generator=generator, dtype=torch.float64) * dim**-0.5)
        values = torch.nn.Parameter(torch.eye(dim, dtype=torch.float64))
        fusion = torch.optim.Adam([query, keys, values], lr=lr)
        temperature = 1.0

        for _ in range(fusion_steps):
            vectors = _fuse(z, query, keys, values, dec)
            cos = torch.einsum("lnd,ld->ln", grad_units, torch.nn.functional.normalize(vectors, dim=-1))
            soft = torch.sigmoid(temperature * cos).mean(1)
            loss = 3 * soft.var() + (1 - torch.nn.functional.cosine_similarity(vectors, units[index], dim=-1)).mean()
            fusion.zero_grad()
            loss.backward()
            fusion.step()
            temperature = min(temperature * 1.2, 1000.0)
        with torch.no_grad():
            vectors = _fuse(z, query, keys, values, dec)
        shape = cavs.vectors.shape[1:]
        rows_layers = [cavs.layers.index(layer) for layer in layers]
        global_cavs[name] = LayerVectors(
            kind=cavs.kind, layers=tuple(layers), vectors=vectors.reshape(len(layers), *shape).float(),
            method="gcav", model=cavs.model, token_norms=cavs.token_norms[rows_layers] if cavs.token_norms is not None else None,
            meta={"concept": name, "dim": dim, "steps": steps, "fusion_steps": fusion_steps, "seed": seed},
        )
        before, _ = tcav_scores(sens.derivatives(cavs.select(layers)))
        after, _ = tcav_scores(sens.derivatives(global_cavs[name]))
        cos = torch.nn.functional.cosine_similarity(vectors, units[index], dim=-1)
        for i, layer in enumerate(layers):
            rows.append({"concept": name, "layer": layer, "tcav_layer": float(before[i]), "tcav_global": float(after[i]),
                         "cos": float(cos[i])})
        variance.append({"concept": name, "variance_before": float(before.var()), "variance_after": float(after.var())})
    return GCAVResult(global_cavs, pd.DataFrame(rows), pd.DataFrame(variance))
