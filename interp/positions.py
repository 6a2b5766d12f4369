"""Absolute token positions of a forward's columns, so interventions select the same token in every forward.

A plain forward holds whole sequences, and an intervention's ``positions`` index its columns. During
generation with a KV cache the forwards hold different slices of one growing sequence: the prompt
first, then one new column per decode step. Column 0 of a decode step is not token 0, so positions
must be read in *absolute* terms. A :class:`PositionFrame` says, for each row and column of one
forward, which token of the row's sequence it holds:

* position 0 is the row's first real token: left padding does not shift what "position 5" means,
  and padding columns hold no position (``-1``) and are never selected;
* the row's prompt is positions ``0 .. prompt_length - 1``; generated tokens follow it.

Scopes restrict an intervention to the prompt, to generated tokens, or to both (``"all"``).
Negative positions count back from an end, which is well defined only for the prompt: with
``scope="prompt"``, ``-1`` is each row's last prompt token in every forward. For generated tokens the
end moves at every step (``-1`` of a full recompute is one token, ``-1`` of a decode step is every
token in turn), so negative positions with scope ``"generated"`` or ``"all"`` are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Int

from interp.errors import InterventionError
from interp.indices import as_indices

Scope = Literal["prompt", "generated", "all"]
SCOPES: tuple[str, ...] = ("prompt", "generated", "all")


@dataclass(frozen=True)
class PositionFrame:
    """Which token of each row every column of one forward holds.

    Attributes:
        absolute: absolute position of each column (``-1`` at padding).
        prompt_lengths: number of real prompt tokens of each row.
    """

    absolute: Int[torch.Tensor, "batch pos"]
    prompt_lengths: Int[torch.Tensor, " batch"]

    @classmethod
    def of(
        cls, attention_mask: Int[torch.Tensor, "batch seq"], prompt_lengths: Int[torch.Tensor, " batch"], columns: int
    ) -> PositionFrame:
        """The frame of a forward over the last ``columns`` columns of a left-padded sequence."""
        real = attention_mask.bool()
        absolute = torch.where(real, real.long().cumsum(dim=-1) - 1, -1)
        return cls(absolute=absolute[:, absolute.shape[1] - columns :], prompt_lengths=prompt_lengths.to(absolute.device))

    def select(self, positions: Sequence[int] | None, scope: str, site_name: str) -> Bool[torch.Tensor, "batch pos"]:
        """Columns holding one of ``positions`` (None: any) within ``scope``; never padding."""
        absolute = self.absolute
        lengths = self.prompt_lengths.to(absolute.device).unsqueeze(1)
        real = absolute >= 0
        if scope == "prompt":
            in_scope = real & (absolute < lengths)
        elif scope == "generated":
            in_scope = absolute >= lengths
        else:
            in_scope = real
        if positions is None:
            return in_scope
        positions = as_indices(positions, "positions", f"at {site_name!r}", InterventionError)
        wanted = torch.tensor(positions, dtype=torch.long, device=absolute.device)
        if bool((wanted < 0).any()):
            if scope != "prompt":
                raise InterventionError(
                    f"negative positions {[p for p in positions if p < 0]} at {site_name!r} with scope {scope!r}: "
                    "during generation the end of the sequence moves at every step, so 'from the end' names a "
                    "different token in each forward. Give absolute positions (0 = each row's first token) or use "
                    "scope='prompt', where -1 is each row's last prompt token"
                )
            shortest = int(self.prompt_lengths.min())
            bad = [p for p in positions if p < -shortest]
            if bad:
                raise InterventionError(
                    f"positions {bad} at {site_name!r} reach before the start of a prompt of {shortest} tokens "
                    f"(valid negative positions: -1..-{shortest})"
                )
        targets = torch.where(wanted < 0, lengths + wanted, wanted)  # (batch, n_positions)
        hit = (absolute.unsqueeze(-1) == targets.unsqueeze(1)).any(dim=-1)
        return in_scope & hit
