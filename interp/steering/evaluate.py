"""Measuring steering: effect on the behaviour, and damage to the model, per generated token.

A steering vector is only as good as the trade it makes: how far it moves the behaviour against
how far it pushes the model off its own distribution. :func:`evaluate` generates under the
interventions and then reads the *unsteered* model on the very same tokens (one teacher-forced
forward), so at every generated step ``t`` both next-token distributions condition on the same prefix:

* ``kl[t] = KL(P_steered || P_unsteered)`` over the full vocabulary: how much the steering changed
  this step's prediction (0 exactly when it changed nothing);
* ``entropy[t]`` of the steered distribution (collapse into repetition shows as entropy near 0);
* ``nll[t] = -log P_unsteered(token_t)``: the chosen token's surprisal to the unsteered model.
  Its mean over a row's tokens, exponentiated, is the **perplexity of the steered text under the
  unsteered model** (fluency: gibberish scores high);
* ``score[t]``: a behaviour score (:class:`TokenScore` on the steered distribution, or
  :class:`VectorScore` on the unsteered model's reading of the text).

Steps after a row's stop token are masked out (``valid``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InvalidArgumentError
from interp.generation import Generation
from interp.interventions import Intervention
from interp.model import Inputs, Model
from interp.tokenize import TokenBatch
from interp.vectors import LayerVectors


class Score(Protocol):
    """A behaviour score per generated step (higher: more of the behaviour)."""

    name: str

    def __call__(
        self, model: Model, generation: Generation, steered_logprobs: Tensor, batch: TokenBatch
    ) -> Float[Tensor, "batch step"]: ...


@dataclass(frozen=True)
class TokenScore:
    """``log P(any of positive) - log P(any of negative)`` under the steered next-token distribution.

    With no negative tokens it is the log-probability of the positive set alone. A CAA multiple-choice
    item scores with ``positive=[" A"], negative=[" B"]``.
    """

    positive: tuple[int, ...]
    negative: tuple[int, ...] = ()
    name: str = "token_logprob"

    @classmethod
    def from_words(cls, model: Model, positive: Sequence[str], negative: Sequence[str] = ()) -> TokenScore:
        """Score words by their first token each (so ``" good"`` counts ``" good"`` and ``" goodness"``)."""
        def first(words: Sequence[str]) -> tuple[int, ...]:
            ids = []
            for word in words:
                tokens = model.tokenizer(word, add_special_tokens=False)["input_ids"]
                if not tokens:
                    raise InvalidArgumentError(f"word {word!r} has no tokens")
                ids.append(int(tokens[0]))
            return tuple(dict.fromkeys(ids))

        if not positive:
            raise InvalidArgumentError("a token score needs at least one positive word")
        return cls(first(positive), first(negative))

    def __call__(self, model: Model, generation: Generation, steered_logprobs: Tensor, batch: TokenBatch) -> Tensor:
        score = steered_logprobs[..., list(self.positive)].logsumexp(dim=-1)
        if self.negative:
            score = score - steered_logprobs[..., list(self.negative)].logsumexp(dim=-1)
        return score


@dataclass(frozen=True)
class VectorScore:
    """Projection of the unsteered model's activation at each generated token onto a unit direction.

    It reads what the *text* expresses (the unsteered model reading the steered text), not the
    injected vector itself. Typically the direction is a probe or the steering vector at a layer.
    """

    vectors: LayerVectors
    layer: int
    name: str = "vector_projection"

    def __call__(self, model: Model, generation: Generation, steered_logprobs: Tensor, batch: TokenBatch) -> Tensor:
        site = self.vectors.site(self.layer)
        _, cache = model.run_with_cache(batch, sites=[site])
        acts = cache[site][:, generation.prompt_length :].float()
        direction = self.vectors.unit(self.layer).to(acts).flatten()
        return acts.flatten(2) @ direction


@dataclass(frozen=True)
class SteeredRun:
    """Per-step measurements of one steered generation (see the module docstring)."""

    generation: Generation
    kl: Float[Tensor, "batch step"]
    entropy: Float[Tensor, "batch step"]
    nll: Float[Tensor, "batch step"]
    valid: Bool[Tensor, "batch step"]
    score: Float[Tensor, "batch step"] | None

    def row_mean(self, values: Tensor) -> Float[Tensor, " batch"]:
        """Mean of per-step ``values`` over each row's real generated steps."""
        mask = self.valid.to(values.dtype)
        return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)

    @property
    def perplexity(self) -> Float[Tensor, " batch"]:
        """Perplexity of each row's generated text under the unsteered model."""
        return self.row_mean(self.nll).exp()

    def summary(self) -> dict[str, float]:
        """Means over rows of the per-row means (one number per measurement)."""
        out = {
            "kl": float(self.row_mean(self.kl).mean()),
            "kl_first": float(self.kl[:, 0].mean()),
            "entropy": float(self.row_mean(self.entropy).mean()),
            "perplexity": float(self.perplexity.mean()),
        }
        if self.score is not None:
            out["score"] = float(self.row_mean(self.score).mean())
        return out


def kl_divergence(p_logprobs: Tensor, q_logprobs: Tensor) -> Tensor:
    """``KL(P || Q)`` over the last axis from log-probabilities (0 where the two agree exactly)."""
    return (p_logprobs.exp() * (p_logprobs - q_logprobs)).sum(dim=-1).clamp(min=0)


def entropy(logprobs: Tensor) -> Tensor:
    """Entropy (nats) over the last axis."""
    return -(logprobs.exp() * logprobs).sum(dim=-1)


def evaluate(
    model: Model,
    prompts: Inputs,
    interventions: Sequence[Intervention],
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_tokens: Sequence[int] = (),
    score: Score | None = None,
) -> SteeredRun:
    """Generate under ``interventions`` and measure every step against the unsteered model."""
    generation = model.generate(
        prompts, interventions, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens, return_logits=True
    )
    assert generation.logits is not None
    steered = generation.logits.double().log_softmax(dim=-1)
    batch = TokenBatch.from_ids(generation.tokens, generation.attention_mask)
    start, steps = generation.prompt_length, generation.generated.shape[1]
    unsteered_logits = model.run(batch)[:, start - 1 : start - 1 + steps]
    unsteered = unsteered_logits.double().log_softmax(dim=-1)
    chosen = generation.generated.unsqueeze(-1)
    valid = torch.arange(steps, device=chosen.device).unsqueeze(0) < generation.generated_lengths.unsqueeze(1)
    return SteeredRun(
        generation=generation,
        kl=kl_divergence(steered, unsteered).float(),
        entropy=entropy(steered).float(),
        nll=-unsteered.gather(-1, chosen).squeeze(-1).float(),
        valid=valid,
        score=None if score is None else score(model, generation, steered, batch).float(),
    )
