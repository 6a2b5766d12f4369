"""GCAV: one global concept vector aligned across layers, and TGCAV (He et al., ICCV 2025).

Per-layer CAVs of one concept often disagree: TCAV at layer 5 says the concept matters, at layer
6 it does not. GCAV learns one *global* concept vector from which a CAV for every layer is
decoded, so the concept's sensitivity is measured consistently across depth. Our version, for
the residual-stream CAVs of a language model, keeps the paper's recipe with small linear parts.
Like the paper, it works on every CAV *run* of a concept (one per random counterpart), so the
global vectors come with the same run-to-run spread the TCAV tests use:

1. **Shared space and alignment.** Per layer ``l``, a linear encoder ``E_l`` (site dims ->
   ``dim``) and decoder ``D_l`` map unit CAVs into one space and back. They start from the layer's
   own CAV subspace (its top singular directions) and are trained with a reconstruction term
   ``1 - cos(D_l E_l u, u)`` (the paper's separately trained per-layer autoencoders use the same
   cosine loss), a cross-layer **InfoNCE** term (cosine similarities at temperature 0.5; the
   positives of a concept's embedding at one layer are the same concept's embeddings at the other
   layers, the negatives are the other concepts and the random CAVs) and a **consistency** term
   ``1 - cos(E_l u, z_0)`` to the embedding before alignment, weighted InfoNCE : consistency
   = 1 : 3 as in the paper (Adam; lr 1e-2 where the paper uses 1e-3, since our maps start from each
   layer's CAV subspace rather than at random and need fewer steps).
2. **Fusion.** Attention pooling over layers (a learned query, key and value projections,
   softmax weights across layers, shared by a concept's runs) turns each run's aligned embeddings
   ``z_l = E_l u_l`` into one global embedding ``g`` per run, trained with
   ``3 * mean_runs Var_l(TCAV_l) + 1 * mean(1 - cos(D_l g, D_l z_l))``: the variance across layers
   of the run's TCAV score with the decoded global CAV ``D_l g``, against staying close to the
   run's aligned per-layer CAVs decoded, ``D_l z_l``. The TCAV score in the loss is the paper's
   straight-through estimate: its value is the hard fraction of examples with
   ``cos(grad, D_l g) > 0`` and its gradient is that of ``sigmoid(T cos(grad, D_l g))``, with ``T``
   multiplied by 1.2 before each step up to 1000.
3. **TGCAV** is TCAV with the decoded global CAVs ``D_l g``. Per layer we report the mean over
   runs of the TCAV score with the per-layer CAVs (the TCAV tests' ``concept_mean``) and with the
   global CAVs, their variance across layers (the paper's measure), and the mean over runs of
   each run's variance across layers (what the fusion loss lowers).

Differences from the paper: linear maps instead of MLP autoencoders and an MLP aligner (the
encoders are aligned directly), attention pooling rather than the transformer fusion (the paper's
code also has attention pooling), and full batches instead of mini-batches. Everything is
seeded, so a run is reproducible bit for bit on the same machine.

What a low variance shows: the fusion lowers it by whatever turn of the decoded vectors makes the
scores agree, which on a language model is mostly a turn towards the directions the target's
gradients favour (random CAVs put through GCAV rise too); ``cos`` in the table says how much of
each layer's CAV the global vector kept. docs/methods.md has the numbers on the default model.
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

    cavs: dict[str, LayerVectors]  # each concept's global CAV of its first run (cavs/<concept>'s counterpart)
    runs: dict[str, list[LayerVectors]]  # each concept's global CAVs, one per run
    table: pd.DataFrame  # concept, layer, tcav_layer, tcav_global (means over runs), cos (decoded vs per-layer CAV)
    variance: pd.DataFrame  # concept, variance_before/after (of the run means), run_variance_before/after


def _units(cavs: LayerVectors, layers: Sequence[int]) -> Tensor:
    return torch.stack([cavs.unit(layer).flatten().double().cpu() for layer in layers])


def _runs(value: LayerVectors | Sequence[LayerVectors]) -> list[LayerVectors]:
    return [value] if isinstance(value, LayerVectors) else list(value)


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
    """Attention pooling of each run's layer embeddings ``z`` (run, layer, dim) into one, decoded into every layer."""
    weights = torch.softmax((z @ keys) @ query / z.shape[-1] ** 0.5, dim=1)  # (run, layer)
    pooled = torch.einsum("rl,rlk->rk", weights, z @ values)
    return torch.einsum("rk,lkd->rld", pooled, dec)


def straight_through_tcav(cos: Tensor, temperature: float) -> Tensor:
    """TCAV scores over the last axis whose value is the hard fraction of ``cos > 0`` and whose
    gradient is that of the mean of ``sigmoid(temperature * cos)`` (the paper's soft TCAV)."""
    soft = torch.sigmoid(temperature * cos)
    return ((cos > 0).to(cos.dtype) + soft - soft.detach()).mean(-1)


def gcav(
    concepts: Mapping[str, LayerVectors | Sequence[LayerVectors]],
    negatives: Sequence[LayerVectors],
    sens: Sensitivities,
    dim: int = 64,
    steps: int = 200,
    fusion_steps: int = 100,
    seed: int = 0,
    lr: float = 1e-2,
) -> GCAVResult:
    """Align each concept's per-layer CAVs into global CAVs and compare TCAV before and after.

    ``concepts`` maps each concept to its CAV runs (or one :class:`LayerVectors`); ``negatives`` are
    the random-vs-random CAVs, used as InfoNCE negatives. The alignment is small and runs on CPU
    (with its own seeded generator), wherever the CAVs and gradients are.
    """
    layers = list(sens.layers)
    if len(layers) < 2:
        raise InvalidArgumentError("GCAV aligns CAVs across layers; give at least two layers")
    if not concepts:
        raise InvalidArgumentError("GCAV needs at least one concept")
    runs = {name: _runs(value) for name, value in concepts.items()}
    if any(not r for r in runs.values()):
        raise InvalidArgumentError(f"every concept needs at least one CAV run; got {[n for n, r in runs.items() if not r]} empty")
    generator = torch.Generator().manual_seed(seed)
    sets = [cav for r in runs.values() for cav in r] + list(negatives)
    units = torch.stack([_units(cavs, layers) for cavs in sets])  # (set, layer, d)
    owner = [i for i, r in enumerate(runs.values()) for _ in r]
    labels = torch.tensor(owner + [-1 - i for i in range(len(negatives))])
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
    grad_units = torch.nn.functional.normalize(sens.grads.flatten(2).double().cpu(), dim=-1)  # (layer, n, d)
    global_cavs, global_runs, rows, variance = {}, {}, [], []
    start = 0
    for name, concept_runs in runs.items():
        own = units[start : start + len(concept_runs)]  # (run, layer, d)
        start += len(concept_runs)
        z = torch.einsum("rld,ldk->rlk", own, enc)
        decoded = torch.einsum("rlk,lkd->rld", z, dec)  # the aligned per-layer CAVs, decoded
        # a zero query weights the layers equally and identity values keep the embeddings: fusion
        # starts from the mean of the aligned embeddings
        query = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        keys = torch.nn.Parameter(torch.randn(dim, dim, generator=generator, dtype=torch.float64) * dim**-0.5)
        values = torch.nn.Parameter(torch.eye(dim, dtype=torch.float64))
        fusion = torch.optim.Adam([query, keys, values], lr=lr)
        temperature = 1.0
        for _ in range(fusion_steps):
            temperature = min(temperature * 1.2, 1000.0)
            vectors = _fuse(z, query, keys, values, dec)
            cos = torch.einsum("lnd,rld->rln", grad_units, torch.nn.functional.normalize(vectors, dim=-1))
            scores = straight_through_tcav(cos, temperature)  # (run, layer)
            loss = 3 * scores.var(dim=1).mean() + (1 - torch.nn.functional.cosine_similarity(vectors, decoded, dim=-1)).mean()
            fusion.zero_grad()
            loss.backward()
            fusion.step()
        with torch.no_grad():
            vectors = _fuse(z, query, keys, values, dec)
        first = concept_runs[0]
        shape = first.vectors.shape[1:]
        global_runs[name] = [
            LayerVectors(
                kind=cav.kind, layers=tuple(layers), vectors=vectors[r].reshape(len(layers), *shape).float(),
                method="gcav", model=cav.model,
                token_norms=cav.select(layers).token_norms,
                meta={"concept": name, "run": r + 1, "dim": dim, "steps": steps, "fusion_steps": fusion_steps, "seed": seed},
            )
            for r, cav in enumerate(concept_runs)
        ]
        global_cavs[name] = global_runs[name][0]
        before = torch.stack([tcav_scores(sens.derivatives(cav.select(layers)))[0] for cav in concept_runs])  # (run, layer)
        after = torch.stack([tcav_scores(sens.derivatives(cav))[0] for cav in global_runs[name]])
        cos = torch.nn.functional.cosine_similarity(vectors, own, dim=-1).mean(0)
        for i, layer in enumerate(layers):
            rows.append({"concept": name, "layer": layer, "tcav_layer": float(before[:, i].mean()),
                         "tcav_global": float(after[:, i].mean()), "cos": float(cos[i])})
        variance.append({
            "concept": name, "variance_before": float(before.mean(0).var()), "variance_after": float(after.mean(0).var()),
            "run_variance_before": float(before.var(dim=1).mean()), "run_variance_after": float(after.var(dim=1).mean()),
        })
    return GCAVResult(global_cavs, global_runs, pd.DataFrame(rows), pd.DataFrame(variance))
