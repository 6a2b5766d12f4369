"""Cache keys: what a cached array's numbers depend on, hashed into a directory name.

A key is a JSON object of: the model's identity (:func:`model_identity`), the site, the data's
fingerprint (the token ids and padding, or a caller's own fingerprint of them), the selection, the
storage dtype, whether gradients are stored, and the cache format. Any change to any part gives
another directory, so a stale cache is never read; the full key is also stored in the directory's
``meta.json`` and compared on open, so a hash collision or a foreign directory is refused.
"""

from __future__ import annotations

import hashlib
import json

import torch

from interp.model import Model

CACHE_FORMAT = 2
_STRIDE = 97


def model_identity(model: Model) -> dict:
    """Name, family, dtype, config and a fingerprint of every weight of ``model``.

    The weight fingerprint holds, per parameter and buffer, its name, shape, dtype and three float64
    reductions computed where the tensor lives (sum, sum of squares, and the sum of every 97th
    element, which sees permutations): a fine-tune, a reload with other weights, or an edit of a
    single weight changes it, at the cost of one read of the weights.
    """
    stats, names = [], []
    with torch.no_grad():
        for name, tensor in [*model.hf.named_parameters(), *model.hf.named_buffers()]:
            flat = tensor.detach().reshape(-1)
            if not flat.is_floating_point():
                flat = flat.to(torch.float64)
            names.append(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}")
            stats.append(
                torch.stack([flat.sum(dtype=torch.float64), flat.double().square().sum(), flat[::_STRIDE].sum(dtype=torch.float64)])
            )
    digest = hashlib.sha256("|".join(names).encode())
    if stats:
        digest.update(torch.stack(stats).cpu().numpy().tobytes())
    return {
        "name": model.name,
        "family": model.arch.family,
        "dtype": str(model.dtype),
        "config": hashlib.sha256(model.hf.config.to_json_string(use_diff=False).encode()).hexdigest()[:32],
        "weights": digest.hexdigest()[:32],
    }


def cache_key(identity: dict, site: str, data: str, selection: dict, dtype: str, grads: bool) -> dict:
    """The full key of one site's cached array."""
    return {
        "format": CACHE_FORMAT,
        "model": identity,
        "site": site,
        "data": data,
        "selection": selection,
        "dtype": dtype,
        "grads": grads,
    }


def key_digest(key: dict) -> str:
    """The directory name of a key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
