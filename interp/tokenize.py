"""Tokenisation that keeps positions aligned: left padding, position ids, and same-length pairs.

A batch of prompts of different lengths is *left*-padded, so the last real token of every prompt
sits at position ``-1``. Padding is invisible to the model only if three things agree: the attention
mask hides the pad keys, and ``position_ids`` count from the first real token (``cumsum(mask) - 1``),
so a prompt gets the same positions padded or not. Models with learned absolute positions (GPT-2)
silently mispredict without the second part (nnsight #672); we always pass both.

Patching compares a clean and a corrupt prompt position by position, so each pair must tokenise to
the same length; :func:`tokenize_pairs` refuses a pair that does not and names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int

from interp.errors import TokenizationError


@dataclass(frozen=True)
class TokenBatch:
    """Left-padded token ids with their attention mask and position ids."""

    input_ids: Int[torch.Tensor, "batch pos"]
    attention_mask: Int[torch.Tensor, "batch pos"]
    position_ids: Int[torch.Tensor, "batch pos"]

    @classmethod
    def from_ids(cls, input_ids: Int[torch.Tensor, "batch pos"], attention_mask: torch.Tensor | None = None) -> TokenBatch:
        """Wrap ids (mask of ones by default), deriving position ids from the mask."""
        if input_ids.ndim == 1:
            input_ids = input_ids.unsqueeze(0)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device)
        if mask.shape != input_ids.shape:
            raise TokenizationError(f"attention mask shape {tuple(mask.shape)} != ids shape {tuple(input_ids.shape)}")
        position_ids = (mask.long().cumsum(dim=-1) - 1).clamp(min=0)
        return cls(input_ids=input_ids, attention_mask=mask.long(), position_ids=position_ids)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.input_ids.shape[0], self.input_ids.shape[1])

    @property
    def lengths(self) -> Int[torch.Tensor, " batch"]:
        """Number of real (non-pad) tokens of each prompt."""
        return self.attention_mask.sum(dim=-1)

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device))

    def __getitem__(self, rows: slice | Sequence[int] | torch.Tensor) -> TokenBatch:
        """Select rows, dropping padding columns that every selected row has."""
        ids, mask = self.input_ids[rows], self.attention_mask[rows]
        if ids.ndim == 1:
            ids, mask = ids.unsqueeze(0), mask.unsqueeze(0)
        keep = int(mask.sum(dim=-1).max())
        return TokenBatch.from_ids(ids[:, ids.shape[1] - keep :], mask[:, mask.shape[1] - keep :])


def encode(tokenizer, prompt: str, prepend_bos: bool = False) -> list[int]:
    """Token ids of one prompt (no padding); optionally with the tokenizer's BOS token first."""
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if prepend_bos:
        if tokenizer.bos_token_id is None:
            raise TokenizationError("prepend_bos=True but the tokenizer has no BOS token")
        ids = [tokenizer.bos_token_id] + ids
    if not ids:
        raise TokenizationError(f"prompt {prompt!r} tokenises to no tokens")
    return ids


def pad_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else its EOS, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def left_pad(sequences: Sequence[Sequence[int]], pad: int, length: int | None = None) -> TokenBatch:
    """Left-pad id lists to a common length (the longest, or ``length``)."""
    width = max(len(s) for s in sequences) if length is None else length
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq) > width:
            raise TokenizationError(f"prompt {row} has {len(seq)} tokens, more than the padded width {width}")
        if len(seq):
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return TokenBatch.from_ids(ids, mask)


def tokenize(tokenizer, prompts: str | Sequence[str], prepend_bos: bool = False) -> TokenBatch:
    """Tokenise prompts into a left-padded :class:`TokenBatch`."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if len(prompts) == 0:
        raise TokenizationError("no prompts given")
    return left_pad([encode(tokenizer, p, prepend_bos) for p in prompts], pad_id(tokenizer))


def tokenize_pairs(
    tokenizer, clean: Sequence[str], corrupt: Sequence[str], prepend_bos: bool = False
) -> tuple[TokenBatch, TokenBatch]:
    """Tokenise clean/corrupt prompt pairs, refusing any pair whose token lengths differ.

    Both batches are padded to the same width, so position ``i`` is the same slot in both.
    """
    if len(clean) != len(corrupt):
        raise TokenizationError(f"{len(clean)} clean prompts but {len(corrupt)} corrupt prompts")
    clean_ids = [encode(tokenizer, p, prepend_bos) for p in clean]
    corrupt_ids = [encode(tokenizer, p, prepend_bos) for p in corrupt]
    for index, (a, b) in enumerate(zip(clean_ids, corrupt_ids, strict=True)):
        if len(a) != len(b):
            raise TokenizationError(
                f"pair {index} has different token lengths: clean {clean[index]!r} is {len(a)} tokens, "
                f"corrupt {corrupt[index]!r} is {len(b)} tokens. Patching needs aligned positions: "
                "reword the corrupt prompt or choose replacement words of the same token length"
            )
    width = max(len(s) for s in clean_ids)
    pad = pad_id(tokenizer)
    return left_pad(clean_ids, pad, width), left_pad(corrupt_ids, pad, width)
