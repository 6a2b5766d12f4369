"""The function vector: the top heads' mean outputs, summed in the residual stream, and its use.

Head ``(L, j)`` writes ``z[L, j] @ W_O^L[j]`` into the residual stream, where ``W_O^L[j]`` is its
``(d_head, d_model)`` slice of the attention out-projection. The function vector (FV) of a task is
the sum of what the heads with the largest average indirect effect write on average:

    FV = sum over (L, j) in A of  mean[L, j] @ W_O^L[j]

This is the *head-only* form. The reference implementation obtains each term by running the whole
out-projection module on a zero-padded activation, which for models whose out-projection has a bias
(GPT-2, Pythia) adds that bias once per head; ``with_bias=True`` gives that form, for reproducing
its numbers (it is identical on models without the bias, such as Llama-family models).

**Use.** The FV is added to the output of block ``L`` (site ``blocks.L.hook_resid_post``) at the last
token of a prompt, and the model's next-token prediction is read: on a zero-shot prompt
(``"Q: fast\\nA:"``) a good FV makes the model answer as if it had seen demonstrations. The same
vector can be added at any layer; a sweep over layers finds where it acts (the middle layers in the
paper). FVs of different tasks compose by summation (``fv_a + fv_b`` on :class:`LayerVectors`).

A **random-heads** FV (as many heads, drawn at random with a seed) is the baseline: it has the
norm and provenance of a function vector, but not its choice of heads.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from jaxtyping import Float

from interp.errors import InvalidArgumentError
from interp.interventions import Add
from interp.model import Model
from interp.sites import site_name
from interp.vectors import LayerVectors

Head = tuple[int, int]


def top_heads(aie: Float[torch.Tensor, "layer head"], k: int, layers: Sequence[int] | None = None) -> list[Head]:
    """The ``k`` heads ``(layer, head)`` with the largest AIE, largest first (``aie`` row ``i`` is
    ``layers[i]``, default ``i``)."""
    n_layers, n_heads = aie.shape
    layers = list(range(n_layers)) if layers is None else list(layers)
    if not 1 <= k <= aie.numel():
        raise InvalidArgumentError(f"k must be between 1 and the number of heads measured ({aie.numel()}), got {k}")
    order = torch.argsort(aie.flatten(), descending=True, stable=True)[:k].tolist()
    return [(layers[index // n_heads], index % n_heads) for index in order]


def random_heads(n_layers: int, n_heads: int, k: int, seed: int, exclude: Sequence[Head] = ()) -> list[Head]:
    """``k`` distinct heads drawn uniformly (seeded), none of them in ``exclude``."""
    pool = [(layer, head) for layer in range(n_layers) for head in range(n_heads) if (layer, head) not in set(exclude)]
    if k > len(pool):
        raise InvalidArgumentError(f"cannot draw {k} random heads from the {len(pool)} available")
    return sorted(random.Random(seed).sample(pool, k))


def head_outputs(
    model: Model, means: Float[torch.Tensor, "layer head d_head"], heads: Sequence[Head], with_bias: bool = False
) -> Float[torch.Tensor, "head d_model"]:
    """What each head writes into the residual stream on average: ``mean[L, j] @ W_O^L[j]`` (plus the
    out-projection's bias when ``with_bias``)."""
    rows = []
    for layer, head in heads:
        weight = model.arch.out_proj_weight(layer)[head]
        term = means[layer, head].to(weight) @ weight
        bias = model.arch.out_proj_bias(layer)
        if with_bias and bias is not None:
            term = term + bias
        rows.append(term.detach())
    if not rows:
        raise InvalidArgumentError("no heads given; a function vector sums at least one head")
    return torch.stack(rows)


def function_vector(
    model: Model,
    means: Float[torch.Tensor, "layer head d_head"],
    heads: Sequence[Head],
    layers: Sequence[int],
    with_bias: bool = False,
    method: str = "function_vector",
    meta: dict | None = None,
) -> LayerVectors:
    """The function vector of ``heads``, as :class:`LayerVectors` at ``resid_post`` of each of ``layers``
    (the same vector at every layer: where it is added is the user's choice).

    ``meta`` records at least the heads (``[[layer, head], ...]``) and ``with_bias``.
    """
    layers = [int(layer) for layer in layers]
    bad = [layer for layer in layers if not 0 <= layer < model.dims.n_layers]
    if bad or not layers:
        raise InvalidArgumentError(f"layers {layers} must be non-empty and lie in 0..{model.dims.n_layers - 1}")
    vector = head_outputs(model, means, heads, with_bias).sum(dim=0)
    return LayerVectors(
        kind="resid_post",
        layers=tuple(layers),
        vectors=vector.unsqueeze(0).expand(len(layers), -1).clone(),
        method=method,
        model=model.name,
        meta={"heads": [[int(layer), int(head)] for layer, head in heads], "with_bias": with_bias, **(meta or {})},
    )


def injection(vectors: LayerVectors, layer: int, scale: float = 1.0) -> Add:
    """The intervention adding ``scale`` times the vector at ``layer`` to the last token's residual."""
    return Add(site=site_name(vectors.kind, layer), vector=vectors.vector(layer), scale=scale, positions=(-1,))
