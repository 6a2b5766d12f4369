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
import weakref

import torch

from interp.model import Model

CACHE_FORMAT = 2
_STRIDE = 97


def _weights_fingerprint(module: torch.nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=16)
    stats = []
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}|".encode())
            flat = tensor.detach().reshape(-1)
            if flat.device.type == "cpu":
                digest.update(memoryview(flat.contiguous().view(torch.uint8).numpy()))
            else:
                wide = flat.to(torch.float64)
                stats.append(torch.stack([wide.sum(), wide.square().sum(), wide[::_STRIDE].sum()]))
    if stats:
        digest.update(torch.stack(stats).cpu().numpy().tobytes())
    return digest.hexdigest()


_FINGERPRINTS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()


def model_identity(model: Model) -> dict:
    """Name, family, dtype, config and a fingerprint of every weight of ``model``.

    The weight fingerprint hashes every parameter and buffer: their exact bytes on the CPU; on an
    accelerator, three float64 reductions computed in place (sum, sum of squares, and the sum of
    every 97th element, which sees permutations), to avoid copying the weights off the device. It
    is recomputed only when a tensor was replaced or changed in place since the last call (torch's
    version counters), so repeated calls on one model cost nothing.
    """
    tensors = [*model.hf.parameters(), *model.hf.buffers()]
    versions = tuple((id(t), t.data_ptr(), t._version) for t in tensors)
    known = _FINGERPRINTS.get(model.hf)
    if known is None or known[0] != versions:
        known = (versions, _weights_fingerprint(model.hf))
        _FINGERPRINTS[model.hf] = known
    return {
        "name": model.name,
        "family": model.arch.family,
        "dtype": str(model.dtype),
        "config": hashlib.sha256(model.hf.config.to_json_string(use_diff=False).encode()).hexdigest()[:32],
        "weights": known[1],
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
