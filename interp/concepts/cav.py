"""Concept activation vectors: a linear classifier's normal between a concept and a contrast set.

Kim et al. (2018) define a concept's direction at a layer as the normal to the decision boundary of
a linear classifier separating the concept's activations from those of a contrast set (random text,
or another concept). We fit one classifier per layer on pooled activations (one vector per prompt,
:mod:`interp.concepts.selection`) and orient every normal **toward the concept**: the concept is
label 1, so the CAV is the classifier's ``coef_`` as is (the reference code labels the concept 0
and stores ``-coef_``; the direction is the same). The CAV is not normalised; TCAV uses its unit
direction.

Classifiers (``method``):

* ``sgd``: ``SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3)``, hinge loss (a linear SVM), the
  reference TCAV default;
* ``logistic``: ``LogisticRegression`` (L2, ``C=1``);
* ``mean_diff``: the difference of the class means (FastCAV; the boundary is the midpoint), which
  needs no fitting and is what steering-by-difference uses.

Protocol, every step explicit and seeded: classes are **balanced** first (``truncate``: keep a
random subset of the larger class of the smaller class's size, as the reference does; ``weight``:
keep everything and weight classes inversely to their size); then a **stratified** split holds out
``test_fraction`` of each class; the classifier is fitted on the rest and scored on the held-out
part by accuracy and ROC AUC (of the signed distance to the boundary). A CAV near chance accuracy
describes nothing and its TCAV scores should not be read.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import Tensor

from interp.errors import InvalidArgumentError
from interp.vectors import LayerVectors

Classifier = Literal["sgd", "logistic", "mean_diff"]
CLASSIFIERS: tuple[str, ...] = ("sgd", "logistic", "mean_diff")
Balance = Literal["truncate", "weight"]


@dataclass(frozen=True)
class CAVFit:
    """One layer's CAV and how well its classifier separates the held-out examples."""

    vector: Float[Tensor, " d"]
    accuracy: float
    auc: float
    n_train: int
    n_test: int
    converged: bool = True


def _balanced(n_pos: int, n_neg: int, balance: Balance, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if balance == "weight":
        return np.arange(n_pos), np.arange(n_neg)
    keep = min(n_pos, n_neg)
    return np.sort(rng.choice(n_pos, keep, replace=False)), np.sort(rng.choice(n_neg, keep, replace=False))


def fit_cav(
    positive: Float[Tensor, "n_pos d"],
    negative: Float[Tensor, "n_neg d"],
    method: Classifier = "sgd",
    seed: int = 0,
    test_fraction: float = 0.33,
    balance: Balance = "truncate",
    alpha: float = 0.01,
) -> CAVFit:
    """Fit a CAV separating ``positive`` (the concept) from ``negative`` (see the module docstring)."""
    if method not in CLASSIFIERS:
        raise InvalidArgumentError(f"classifier {method!r} is unknown; use one of {', '.join(CLASSIFIERS)}")
    if balance not in ("truncate", "weight"):
        raise InvalidArgumentError(f"balance {balance!r} is unknown; use 'truncate' or 'weight'")
    if not 0 < test_fraction < 1:
        raise InvalidArgumentError(f"test_fraction {test_fraction} must be in (0, 1)")
    pos = positive.detach().double().cpu().reshape(len(positive), -1).numpy()
    neg = negative.detach().double().cpu().reshape(len(negative), -1).numpy()
    if min(len(pos), len(neg)) < 4:
        raise InvalidArgumentError(
            f"a CAV needs at least 4 examples per class to hold some out (got {len(pos)} concept, {len(neg)} contrast)"
        )
    rng = np.random.default_rng(seed)
    keep_pos, keep_neg = _balanced(len(pos), len(neg), balance, rng)
    x = np.concatenate([pos[keep_pos], neg[keep_neg]])
    y = np.concatenate([np.ones(len(keep_pos), dtype=int), np.zeros(len(keep_neg), dtype=int)])
    split_seed = int(rng.integers(2**31 - 1))
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=split_seed
    )
    weight = "balanced" if balance == "weight" else None
    if method == "mean_diff":
        mu_pos, mu_neg = x_train[y_train == 1].mean(0), x_train[y_train == 0].mean(0)
        vector = mu_pos - mu_neg
        scores = (x_test - (mu_pos + mu_neg) / 2) @ vector
        converged = True
    else:
        model_seed = int(rng.integers(2**31 - 1))
        if method == "sgd":
            classifier = SGDClassifier(alpha=alpha, max_iter=1000, tol=1e-3, class_weight=weight, random_state=model_seed)
        else:
            classifier = LogisticRegression(max_iter=2000, class_weight=weight, random_state=model_seed)
        with warnings.catch_warnings(record=True) as caught:  # reported per CAV, not printed per fit
            warnings.simplefilter("always", ConvergenceWarning)
            classifier.fit(x_train, y_train)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        vector = classifier.coef_[0]
        scores = classifier.decision_function(x_test)
    predicted = (scores > 0).astype(int)
    accuracy = float((predicted == y_test).mean())
    auc = float(roc_auc_score(y_test, scores)) if len(set(y_test.tolist())) == 2 else float("nan")
    shape = positive.shape[1:]
    return CAVFit(
        vector=torch.from_numpy(np.ascontiguousarray(vector)).reshape(shape).to(torch.float64),
        accuracy=accuracy, auc=auc, n_train=len(y_train), n_test=len(y_test), converged=converged,
    )


def train_cavs(
    positive: Float[Tensor, "layer n_pos *dims"],
    negative: Float[Tensor, "layer n_neg *dims"],
    kind: str,
    layers: Sequence[int],
    method: Classifier = "sgd",
    seed: int = 0,
    test_fraction: float = 0.33,
    balance: Balance = "truncate",
    alpha: float = 0.01,
    model: Mapping[str, Any] | str | None = None,
    data_hash: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> LayerVectors:
    """One CAV per layer from ``(layer, n, ...)`` activations, as :class:`~interp.vectors.LayerVectors`.

    Every layer uses the same seed, so the same examples are held out at every layer and accuracies
    are comparable across depth. ``meta`` gains ``accuracy``, ``auc``, ``classifier``, ``seed``,
    ``balance`` and the train/test counts; ``token_norms`` are the median pooled-vector norms.
    """
    if positive.shape[0] != len(layers) or negative.shape[0] != len(layers):
        raise InvalidArgumentError(
            f"activations cover {positive.shape[0]} and {negative.shape[0]} layers but {len(layers)} layers are named"
        )
    fits = [
        fit_cav(positive[i], negative[i], method, seed, test_fraction, balance, alpha) for i in range(len(layers))
    ]
    both = torch.cat([positive, negative], dim=1).double()
    norms = both.flatten(2).norm(dim=-1).median(dim=1).values.float()
    record = {
        **dict(meta or {}),
        "classifier": method, "seed": seed, "balance": balance, "alpha": alpha, "test_fraction": test_fraction,
        "accuracy": [f.accuracy for f in fits], "auc": [f.auc for f in fits],
        "n_train": fits[0].n_train, "n_test": fits[0].n_test, "converged": [f.converged for f in fits],
    }
    return LayerVectors(
        kind=kind, layers=tuple(layers), vectors=torch.stack([f.vector for f in fits]).float(),
        method=f"cav-{method}", model=model, data_hash=data_hash, token_norms=norms, meta=record,
    )
