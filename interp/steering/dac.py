"""Dynamic Activation Composition (Scalena, Sarti and Nissim, BlackboxNLP 2024).

DAC steers several properties at once (say: answer in Italian, and formally) and sets each
property's intensity **per generated token** from how much steering would change the prediction.

**Vectors, per step** (:func:`dac_deltas`). A property is read from two prompt sets with the same
items: ``A`` shows the property (e.g. few-shot prompts whose answers are Italian), ``B`` does not
(English). Each prompt is greedily continued for ``steps`` tokens; at generation step ``t`` the site
(by default ``z``, the attention heads' outputs before ``W_O``) is read at the last position, i.e.
token ``P - 1 + t`` of a prompt of ``P`` tokens. ``Δ[t, l] = mean_A - mean_B`` over the prompts that
reached step ``t``: one vector per step and layer.

**Intensity, per step** (:func:`dac_generate`). At step ``s`` of a zero-shot generation:

1. the unsteered model gives next-token logits ``l_orig``;
2. for each property ``j``, a *probe* pass steers every position ``P - 1 + i``, ``i <= s``, with
   ``alpha_start * Δ_j[i]`` (``alpha_start = 2``) and gives ``l_j``;
3. both logit vectors are top-p filtered, the union of the kept tokens is taken, both are
   log-softmaxed over that union, and ``KL_j = KL(P_orig || P_j)`` (with ``top_p = 1`` the union is
   the whole vocabulary);
4. ``alpha_{j,s} = clip(KL_j, 0, alpha_max)`` with ``alpha_max = 2``;
5. the final pass adds ``sum_j alpha_{j,i} Δ_j[i]`` at every position ``P - 1 + i``, ``i <= s``, each
   earlier step keeping its own intensities, and its greedy token is the output.

So a property whose steering would not move the distribution gets intensity 0, and one that would
move it a lot is applied at most at ``alpha_max``. The intensities per step and property are part
of the result (:class:`DACResult`).

**KV cache.** The authors' code re-runs the whole prefix three (or 2 + properties) times per step.
Every pass here keeps its own KV cache instead: the steering a pass applies at a position never
changes after that position is computed (the probe always uses ``alpha_start``, the final pass the
intensity fixed at that step, the unsteered pass nothing), so a cached pass computes exactly what
the re-run would. ``use_cache=False`` runs the re-run itself, and a test checks that both choose the
same tokens and intensities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.arch import kv
from interp.errors import InvalidArgumentError
from interp.interventions import Add, Intervention
from interp.model import Model
from interp.positions import PositionFrame
from interp.sites import BLOCK, site_name
from interp.tokenize import TokenBatch, pad_id


@dataclass(frozen=True)
class DACProperty:
    """One property: per-step vectors ``deltas[step, layer_row, *site dims]`` at ``kind`` for ``layers``."""

    name: str
    deltas: Float[Tensor, "step layer *dims"]
    layers: tuple[int, ...]
    kind: str = "z"

    def __post_init__(self) -> None:
        if self.kind not in BLOCK:
            raise InvalidArgumentError(f"site kind {self.kind!r} is not a block site kind")
        if self.deltas.ndim < 3 or self.deltas.shape[1] != len(self.layers):
            raise InvalidArgumentError(
                f"property {self.name!r}: deltas must have shape (steps, layers={len(self.layers)}, *site dims); "
                f"got {tuple(self.deltas.shape)}"
            )

    @property
    def steps(self) -> int:
        return int(self.deltas.shape[0])


def dac_deltas(
    model: Model,
    prompts_a: Sequence[str],
    prompts_b: Sequence[str],
    steps: int = 30,
    kind: str = "z",
    layers: Sequence[int] | None = None,
    name: str = "property",
) -> DACProperty:
    """Per-step mean difference between greedy continuations of ``prompts_a`` and ``prompts_b``."""
    if len(prompts_a) != len(prompts_b) or not prompts_a:
        raise InvalidArgumentError(
            f"DAC needs the same items in both prompt sets; got {len(prompts_a)} and {len(prompts_b)} prompts"
        )
    chosen = tuple(range(model.dims.n_layers)) if layers is None else tuple(int(layer) for layer in layers)
    means = [_step_means(model, list(prompts), steps, kind, chosen) for prompts in (prompts_a, prompts_b)]
    reached = min(means[0].shape[0], means[1].shape[0])
    return DACProperty(name=name, deltas=(means[0][:reached] - means[1][:reached]).float(), layers=chosen, kind=kind)


def _step_means(model: Model, prompts: list[str], steps: int, kind: str, layers: tuple[int, ...]) -> Tensor:
    """Mean over prompts of the site at the last position of each generation step: (steps, layers, *dims)."""
    generation = model.generate(prompts, max_new_tokens=steps)
    batch = TokenBatch.from_ids(generation.tokens, generation.attention_mask)
    sites = [site_name(kind, layer) for layer in layers]
    _, cache = model.run_with_cache(batch, sites=sites)
    start = generation.prompt_length - 1
    stacked = torch.stack([cache[site][:, start : start + steps].double() for site in sites], dim=2)
    return reached_mean(stacked, generation.generated_lengths)


def reached_mean(stacked: Float[Tensor, "row step *dims"], lengths: Int[Tensor, " row"]) -> Float[Tensor, "reached *dims"]:
    """Mean over rows of each step's values, over the rows whose generation reached that step.

    Steps no row reached are dropped. The result is on ``stacked``'s device; ``lengths`` may be anywhere.
    """
    reached = torch.arange(stacked.shape[1], device=stacked.device).unsqueeze(0) < lengths.to(stacked.device).unsqueeze(1)
    trailing = [1] * (stacked.ndim - 2)
    counts = reached.sum(dim=0)
    last = min(int(lengths.max()), stacked.shape[1])  # steps below the longest generation have counts > 0
    return (stacked * reached.to(stacked).view(*reached.shape, *trailing)).sum(dim=0)[:last] / counts[:last].view(-1, *trailing)


@dataclass(frozen=True)
class DACResult:
    """Tokens, texts and the per-step intensities and KLs of a DAC generation."""

    tokens: Int[Tensor, "batch seq"]
    prompt_length: int
    generated_lengths: Int[Tensor, " batch"]
    texts: list[str]
    names: tuple[str, ...]
    alphas: Float[Tensor, "batch step prop"]
    kls: Float[Tensor, "batch step prop"]

    def trace(self) -> pd.DataFrame:
        """One row per (prompt, step, property): the intensity and the KL it came from."""
        rows = []
        for row in range(self.alphas.shape[0]):
            for step in range(int(self.generated_lengths[row])):
                for index, name in enumerate(self.names):
                    rows.append(
                        {
                            "row": row,
                            "step": step,
                            "property": name,
                            "alpha": float(self.alphas[row, step, index]),
                            "kl": float(self.kls[row, step, index]),
                        }
                    )
        return pd.DataFrame(rows)


def top_p_mask(logits: Float[Tensor, "batch vocab"], top_p: float) -> Tensor:
    """Tokens in the smallest set whose probability reaches ``top_p`` (at least one; all for ``top_p >= 1``)."""
    if top_p >= 1:
        return torch.ones_like(logits, dtype=torch.bool)
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    keep_sorted = (probs.cumsum(dim=-1) - probs) < top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def union_kl(orig: Float[Tensor, "batch vocab"], steered: Float[Tensor, "batch vocab"], top_p: float) -> Tensor:
    """``KL(P_orig || P_steered)`` renormalised over the union of both top-p sets (DAC's step 3)."""
    keep = top_p_mask(orig, top_p) | top_p_mask(steered, top_p)
    log_orig = orig.double().masked_fill(~keep, float("-inf")).log_softmax(dim=-1)
    log_steer = steered.double().masked_fill(~keep, float("-inf")).log_softmax(dim=-1)
    terms = torch.where(keep, log_orig.exp() * (log_orig - log_steer), torch.zeros_like(log_orig))
    return terms.sum(dim=-1).clamp(min=0)


def _step_adds(
    prop: DACProperty, step: int, alphas: Float[Tensor, " batch"], prompt_lengths: Tensor, per_row: bool
) -> list[Intervention]:
    """Adds of ``alphas[row] * Δ[step]`` at position ``P_row - 1 + step`` of each row, every layer."""
    if step >= prop.steps or not bool((alphas != 0).any()):
        return []
    adds: list[Intervention] = []
    for row_index, layer in enumerate(prop.layers):
        delta = prop.deltas[step, row_index]
        scaled = alphas.view(-1, 1, *([1] * delta.ndim)).to(delta) * delta
        site = site_name(prop.kind, layer)
        if step == 0:
            adds.append(Add(site=site, vector=scaled, scope="prompt", positions=[-1]))
        elif not per_row:
            adds.append(Add(site=site, vector=scaled, scope="generated"))
        else:
            for row in range(scaled.shape[0]):
                if alphas[row] != 0:
                    position = int(prompt_lengths[row]) - 1 + step
                    adds.append(Add(site=site, vector=scaled[row, 0], scope="generated", positions=[position], rows=[row]))
    return adds


class _Pass:
    """One of DAC's forward streams (unsteered, a probe, the final) with its own cache and past intensities."""

    def __init__(self, model: Model, use_cache: bool) -> None:
        self.model, self.use_cache, self.cache = model, use_cache, None
        self.history: list[list[tuple[DACProperty, Tensor]]] = []

    def logits(
        self, ids: Tensor, mask: Tensor, prompt_lengths: Tensor, now: list[tuple[DACProperty, Tensor]]
    ) -> Tensor:
        """Last-position logits with ``now`` (property, per-row alphas) applied at the current step."""
        step = len(self.history)
        self.history.append(now)
        if self.use_cache:
            adds = [a for prop, alphas in now for a in _step_adds(prop, step, alphas, prompt_lengths, per_row=False)]
            columns = ids.shape[1] if self.cache is None else 1
        else:
            adds = [
                a
                for i, past in enumerate(self.history)
                for prop, alphas in past
                for a in _step_adds(prop, i, alphas, prompt_lengths, per_row=True)
            ]
            columns = ids.shape[1]
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        with self.model.hooks(adds) as session:
            output = self.model.call(
                session,
                frame=PositionFrame.of(mask, prompt_lengths, columns),
                input_ids=ids[:, -columns:],
                attention_mask=mask,
                position_ids=positions[:, -columns:],
                use_cache=self.use_cache,
                **kv.cache_kwargs(self.cache),
            )
        if self.use_cache:
            self.cache = kv.returned_cache(output)
        return output.logits[:, -1].double()


def dac_generate(
    model: Model,
    prompts: str | Sequence[str],
    properties: Sequence[DACProperty],
    max_new_tokens: int = 30,
    top_p: float = 0.5,
    alpha_start: float = 2.0,
    alpha_max: float = 2.0,
    stop_tokens: Sequence[int] = (),
    use_cache: bool = True,
) -> DACResult:
    """Greedy generation with DAC's per-step, per-property intensities (see the module docstring)."""
    if not properties:
        raise InvalidArgumentError("DAC needs at least one property (a DACProperty from dac_deltas)")
    if not 0 < top_p <= 1:
        raise InvalidArgumentError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise InvalidArgumentError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    batch = model.as_batch([prompts] if isinstance(prompts, str) else list(prompts))
    ids, mask, lengths = batch.input_ids, batch.attention_mask, batch.lengths
    rows, prompt_length = batch.shape
    unsteered, final = _Pass(model, use_cache), _Pass(model, use_cache)
    probes = [_Pass(model, use_cache) for _ in properties]
    stops = torch.tensor(list(stop_tokens), dtype=torch.long, device=ids.device)
    pad = pad_id(model.tokenizer)
    done = torch.zeros(rows, dtype=torch.bool, device=ids.device)
    generated = torch.zeros(rows, dtype=torch.long, device=ids.device)
    alpha_steps, kl_steps = [], []
    start = torch.full((rows,), float(alpha_start), dtype=torch.float64)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            orig = unsteered.logits(ids, mask, lengths, [])
            kls = torch.stack(
                [union_kl(orig, probe.logits(ids, mask, lengths, [(prop, start)]), top_p).cpu() for prop, probe in zip(properties, probes, strict=True)],
                dim=-1,
            )
            alphas = kls.clamp(0, alpha_max).masked_fill(done.cpu().unsqueeze(1), 0.0)
            chosen = final.logits(ids, mask, lengths, [(prop, alphas[:, j]) for j, prop in enumerate(properties)]).argmax(dim=-1)
            chosen = torch.where(done, pad, chosen)
            generated += (~done).long()
            done |= torch.isin(chosen, stops)
            alpha_steps.append(alphas)
            kl_steps.append(kls)
            ids = torch.cat([ids, chosen.unsqueeze(1)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if bool(done.all()):
                break
    texts = [model.tokenizer.decode(ids[r, prompt_length : prompt_length + int(generated[r])].tolist()) for r in range(rows)]
    return DACResult(
        tokens=ids,
        prompt_length=prompt_length,
        generated_lengths=generated.cpu(),
        texts=texts,
        names=tuple(prop.name for prop in properties),
        alphas=torch.stack(alpha_steps, dim=1).float(),
        kls=torch.stack(kl_steps, dim=1).float(),
    )
