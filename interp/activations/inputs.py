"""What extraction reads: prompts, a left-padded token batch, or rows of token ids, as one interface.

:class:`TokenInput` holds the prompts' token ids on the CPU, hands out left-padded sub-batches of
consecutive prompts (trimmed to the longest prompt among them, so a batch of short prompts pays
for no padding), and fingerprints the ids for the cache key. Rows of ids given as a numpy array
(for example a memory-mapped token file) are read only when their batch runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from interp.activations.errors import ActivationsError
from interp.tokenize import TokenBatch, encode, left_pad, pad_id

Inputs = str | Sequence[str] | TokenBatch | Int[Tensor, "n pos"] | np.ndarray

_HASH_ROWS = 4096


@dataclass
class TokenInput:
    """Prompts as token ids: a left-padded batch, or unpadded rows kept as a (memory-mapped) array."""

    batch: TokenBatch | None
    rows: np.ndarray | None
    texts: list[str] | None

    @classmethod
    def from_inputs(cls, inputs: Inputs, tokenizer, prepend_bos: bool) -> TokenInput:
        if isinstance(inputs, str):
            inputs = [inputs]
        if isinstance(inputs, TokenBatch):
            mask = inputs.attention_mask.cpu()
            if (mask[:, 1:] < mask[:, :-1]).any():
                raise ActivationsError("the token batch is not left-padded (a pad follows a real token); pad on the left")
            return cls(batch=inputs.to("cpu"), rows=None, texts=None)
        if isinstance(inputs, torch.Tensor):
            ids = inputs.unsqueeze(0) if inputs.ndim == 1 else inputs
            return cls(batch=TokenBatch.from_ids(ids.to("cpu", torch.long)), rows=None, texts=None)
        if isinstance(inputs, np.ndarray):
            if inputs.ndim != 2:
                raise ActivationsError(f"token rows must be 2-D (rows, pos), got shape {inputs.shape}")
            return cls(batch=None, rows=inputs, texts=None)
        texts = list(inputs)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ActivationsError("inputs must be prompts (strings), a TokenBatch, or token ids; got none or a mix")
        ids = [encode(tokenizer, text, prepend_bos) for text in texts]
        return cls(batch=left_pad(ids, pad_id(tokenizer)), rows=None, texts=texts)

    @property
    def n(self) -> int:
        return int(self.rows.shape[0]) if self.rows is not None else self.batch.shape[0]

    @property
    def lengths(self) -> Int[Tensor, " n"]:
        """Real (non-pad) tokens of each prompt."""
        if self.rows is not None:
            return torch.full((self.n,), int(self.rows.shape[1]), dtype=torch.long)
        return self.batch.lengths.to(torch.long)

    def sub_batch(self, lo: int, hi: int) -> TokenBatch:
        """Prompts ``lo..hi`` as a left-padded batch as wide as the longest of them."""
        if self.rows is not None:
            return TokenBatch.from_ids(torch.from_numpy(np.array(self.rows[lo:hi], dtype=np.int64)))
        return self.batch[lo:hi]

    def fingerprint(self) -> str:
        """A hash of every prompt's token ids and padding (what the activations depend on)."""
        digest = hashlib.sha256()
        if self.rows is not None:
            digest.update(f"rows{tuple(self.rows.shape)}".encode())
            for start in range(0, self.n, _HASH_ROWS):
                digest.update(np.ascontiguousarray(self.rows[start : start + _HASH_ROWS], dtype=np.int64).tobytes())
        else:
            digest.update(f"batch{tuple(self.batch.shape)}".encode())
            digest.update(self.batch.input_ids.to(torch.long).numpy().tobytes())
            digest.update(self.batch.attention_mask.to(torch.long).numpy().tobytes())
        return digest.hexdigest()[:32]
