"""Generation under interventions: continue prompts token by token with a KV cache.

Autoregressive decoding runs the prompt once, keeps every layer's keys and values in a cache
(:mod:`interp.arch.kv`), and then runs one forward per new token that holds only that token's column:
its queries attend to the cached keys and values of every earlier position. The logits of the
newest column give the next token: the argmax (greedy, ``temperature=0``) or a sample from
``softmax(logits / temperature)``, optionally restricted to the ``top_k`` likeliest tokens and to
the smallest set whose probability reaches ``top_p`` (nucleus sampling).

Interventions apply in every forward through one :class:`~interp.hooks.HookSession`. Because the
forwards hold different slices of the sequence, each one passes a
:class:`~interp.positions.PositionFrame` and interventions select **absolute** token positions:
position 0 is each row's first real token (left padding shifts nothing), the prompt is positions
``0 .. prompt_length - 1`` and generated tokens follow. ``scope`` restricts an intervention to the
prompt, the generated tokens, or both; negative positions are allowed only with ``scope="prompt"``,
where ``-1`` is each row's last prompt token (see :mod:`interp.positions`).

Guarantees, each tested against a full recompute of the whole sequence at every step
(``use_cache=False``):

* cached and uncached greedy generation choose the same tokens under interventions;
* a ``"generated"`` intervention leaves every prompt logit bitwise untouched;
* a left-padded batch generates what each prompt generates alone;
* sampling with a ``seed`` is reproducible;
* hooks are removed afterwards, on errors too (the session's guarantee), and the model's lock is
  held for the whole generation.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int

from interp.arch import kv
from interp.errors import GenerationError, InterventionError
from interp.interventions import Intervention
from interp.positions import PositionFrame
from interp.tokenize import pad_id

if TYPE_CHECKING:
    from interp.model import Inputs, Model


@dataclass(frozen=True)
class Generation:
    """The result of :func:`generate`.

    Attributes:
        tokens: prompt (left-padded) and generated ids; after a stop token a row holds padding.
        attention_mask: 1 on real tokens, 0 on the prompt's left padding.
        prompt_length: padded width of the prompt part of ``tokens``.
        prompt_lengths: real prompt tokens of each row.
        generated_lengths: generated tokens of each row, a stop token included.
        texts: each row's generated text.
        logits: when asked, the logits each step chose its token from (interventions applied).
    """

    tokens: Int[torch.Tensor, "batch seq"]
    attention_mask: Int[torch.Tensor, "batch seq"]
    prompt_length: int
    prompt_lengths: Int[torch.Tensor, " batch"]
    generated_lengths: Int[torch.Tensor, " batch"]
    texts: list[str]
    logits: Float[torch.Tensor, "batch step vocab"] | None

    @property
    def generated(self) -> Int[torch.Tensor, "batch step"]:
        """The generated ids (padding after a row's stop token)."""
        return self.tokens[:, self.prompt_length :]


def generate(
    model: Model,
    prompts: Inputs,
    interventions: Sequence[Intervention] = (),
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_tokens: Sequence[int] = (),
    return_logits: bool = False,
    use_cache: bool = True,
) -> Generation:
    """Continue ``prompts`` by up to ``max_new_tokens`` tokens with ``interventions`` applied.

    Args:
        model: the model.
        prompts: a prompt, prompts (left-padded), a TokenBatch or token ids.
        interventions: applied in every forward; ``positions`` are absolute token positions.
        max_new_tokens: tokens to add to each row.
        temperature: 0 picks the likeliest token (greedy); above 0 samples from
            ``softmax(logits / temperature)``.
        top_k, top_p: when sampling, keep only the ``top_k`` likeliest tokens and the smallest set
            whose probability reaches ``top_p``.
        seed: seeds the sampler's own generator (same seed, same tokens); None uses torch's global RNG.
        stop_tokens: a row that emits one of these stops (it is kept; the row then holds padding);
            generation ends when every row has stopped.
        return_logits: keep each step's logits.
        use_cache: False recomputes the whole sequence at every step (the reference for the cache).
    """
    _check_settings(max_new_tokens, temperature, top_k, top_p)
    _check_frame_support(interventions)
    if use_cache:
        model.arch.require("kv_cache")
    batch = model.as_batch(prompts)
    limit, longest = model.context_length, int(batch.lengths.max())
    if limit is not None and longest + max_new_tokens > limit:
        raise GenerationError(
            f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the context of "
            f"{model.name!r} ({limit} tokens); ask for at most {max(limit - longest, 0)} new tokens or shorten the prompt"
        )
    device = model.device
    prompt_lengths = batch.lengths
    ids, mask = batch.input_ids, batch.attention_mask
    rows, prompt_length = batch.shape
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    stops = torch.tensor(list(stop_tokens), dtype=torch.long, device=device)
    pad = pad_id(model.tokenizer)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    steps: list[torch.Tensor] = []
    cache = None
    with torch.no_grad(), model.hooks(interventions) as session:
        for _ in range(max_new_tokens):
            columns = 1 if cache is not None else ids.shape[1]
            positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
            output = model.call(
                session,
                frame=PositionFrame.of(mask, prompt_lengths, columns),
                input_ids=ids[:, -columns:],
                attention_mask=mask,
                position_ids=positions[:, -columns:],
                use_cache=use_cache,
                **kv.cache_kwargs(cache),
            )
            if use_cache:
                cache = kv.returned_cache(output)
            logits = output.logits[:, -1]
            if return_logits:
                steps.append(logits.clone())
            chosen = _choose(logits, temperature, top_k, top_p, generator)
            chosen = torch.where(done, pad, chosen)
            lengths += (~done).long()
            done |= torch.isin(chosen, stops)
            ids = torch.cat([ids, chosen.unsqueeze(1)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if bool(done.all()):
                break
    texts = [
        model.tokenizer.decode(ids[row, prompt_length : prompt_length + int(lengths[row])].tolist())
        for row in range(rows)
    ]
    return Generation(
        tokens=ids,
        attention_mask=torch.cat([batch.attention_mask, torch.ones_like(ids[:, prompt_length:])], dim=1),
        prompt_length=prompt_length,
        prompt_lengths=prompt_lengths,
        generated_lengths=lengths,
        texts=texts,
        logits=torch.stack(steps, dim=1) if return_logits else None,
    )


def _check_settings(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise GenerationError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise GenerationError(f"top_k must be at least 1 (or None for no limit), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise GenerationError(f"top_p must be in (0, 1] (or None for no limit), got {top_p}")


def _check_frame_support(interventions: Sequence[Intervention]) -> None:
    """Refuse interventions whose ``apply`` cannot take the forward's position frame."""
    for intervention in interventions:
        if "frame" not in inspect.signature(type(intervention).apply).parameters:
            raise InterventionError(
                f"{type(intervention).__name__} at {intervention.site!r} overrides apply() without a frame "
                "parameter, so it cannot select absolute positions during generation; use a Patch, Add, "
                "Scale, Zero, MeanAblate or Replace, or give its apply() a `frame` argument"
            )


def _choose(
    logits: Float[torch.Tensor, "batch vocab"],
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> Int[torch.Tensor, " batch"]:
    """The next token of each row: argmax at temperature 0, else a (top-k/top-p filtered) sample."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p  # mass before this token already reaches top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(outside, float("-inf")))
    return torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(-1)
