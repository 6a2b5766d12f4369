"""Directions from paired activations: the four ways to turn a contrast set into one vector.

Each function takes the activations of the positive and the negative side of ``n`` pairs at one
layer, two aligned ``(n, d)`` matrices (row ``i`` of both is pair ``i``), and returns one ``d``-vector:

* :func:`mean_diff`: **CAA** (Rimsky et al. 2024), the mean of the paired differences
  ``mean_i(pos_i - neg_i)``. It keeps the differences' magnitude, so strength 1 adds the average
  shift between the two sides; the same as steering-vectors' ``mean_aggregator``.
* :func:`single_pair`: **ActAdd** (Turner et al. 2023), the difference of one pair.
* :func:`pca_diff`: repeng's ``pca_diff``: the first principal component of the paired
  differences. The PCA is *centred* (scikit-learn's ``PCA``), so it finds the direction along which
  the differences vary most, not their mean; the component has unit norm and its sign is chosen so
  that the positive side projects higher than the negative side in more pairs than not (a tie
  keeps the solver's sign, as repeng does).
* :func:`logistic`: a logistic-regression probe separating the two sides (steering-vectors'
  ``logistic_aggregator``): activations are centred on each pair's midpoint, the classifier has no
  intercept, and the unit-normalised weight vector is the direction.

The PCA and logistic directions have unit norm, so their raw strength is in absolute activation
units; the ``norm`` unit of :class:`~interp.vectors.LayerVectors` makes all four comparable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InvalidArgumentError

Method = Callable[[Tensor, Tensor], Tensor]


def _check(pos: Tensor, neg: Tensor, at_least: int = 1) -> None:
    if pos.shape != neg.shape or pos.ndim != 2:
        raise InvalidArgumentError(
            f"positive and negative activations must be two (pairs, d) matrices of one shape; got "
            f"{tuple(pos.shape)} and {tuple(neg.shape)}"
        )
    if pos.shape[0] < at_least:
        raise InvalidArgumentError(f"this method needs at least {at_least} pairs; got {pos.shape[0]}")


def mean_diff(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"]) -> Float[Tensor, " d"]:
    """CAA: the mean over pairs of ``pos - neg``."""
    _check(pos, neg)
    return (pos - neg).mean(dim=0)


def single_pair(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"], index: int = 0) -> Float[Tensor, " d"]:
    """ActAdd: ``pos[index] - neg[index]`` for one pair."""
    _check(pos, neg)
    if not -pos.shape[0] <= index < pos.shape[0]:
        raise InvalidArgumentError(f"pair index {index} is outside the {pos.shape[0]} pairs")
    return pos[index] - neg[index]


def pca_diff(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"]) -> Float[Tensor, " d"]:
    """repeng's ``pca_diff``: first component of the centred PCA of ``pos - neg``, sign by majority of pairs."""
    _check(pos, neg, at_least=2)
    from sklearn.decomposition import PCA

    diffs = (pos - neg).double().cpu().numpy()
    direction = PCA(n_components=1, whiten=False).fit(diffs).components_[0]
    projected_pos = pos.double().cpu().numpy() @ direction
    projected_neg = neg.double().cpu().numpy() @ direction
    smaller, larger = np.mean(projected_pos < projected_neg), np.mean(projected_pos > projected_neg)
    if smaller > larger:
        direction = -direction
    return torch.from_numpy(direction).to(pos)


def logistic(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"], c: float = 1.0) -> Float[Tensor, " d"]:
    """Logistic-probe direction on pair-centred activations (no intercept), unit norm."""
    _check(pos, neg)
    from sklearn.linear_model import LogisticRegression

    middle = (pos + neg) / 2
    features = torch.cat([pos - middle, neg - middle]).double().cpu().numpy()
    labels = np.concatenate([np.ones(pos.shape[0]), -np.ones(neg.shape[0])])
    weights = LogisticRegression(fit_intercept=False, C=c, max_iter=1000).fit(features, labels).coef_[0]
    norm = np.linalg.norm(weights)
    return torch.from_numpy(weights / norm if norm > 0 else weights).to(pos)


METHODS: dict[str, Method] = {
    "mean_diff": mean_diff,
    "single_pair": single_pair,
    "pca_diff": pca_diff,
    "logistic": logistic,
}
"""Method names (stored as :attr:`LayerVectors.method`) and their functions."""
