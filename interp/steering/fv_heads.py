"""Which attention heads carry an in-context task: mean head outputs and their average indirect effect.

Todd et al. (2024) find that a few attention heads, in the middle layers, move a compact
representation of the task demonstrated in a prompt to the last token. Two measurements find them.

**Mean head activation.** A head's activation is its slice of the input of the attention
out-projection (site ``blocks.L.attn.hook_z``, before ``W_O``), at the last token, the position
that predicts the query's answer. Averaged over clean in-context prompts, ``mean[L, j]`` is what
head ``(L, j)`` writes there when the task is on display. By default only prompts whose answer the
model gets right in context are averaged, as the reference implementation does.

**Average indirect effect (AIE).** On a prompt whose demonstrations have *shuffled* labels, the
relation is no longer shown. Setting one head's last-token activation to its task mean and
re-running measures how much that head alone restores the task:
``CIE = P_patched(answer) - P_shuffled(answer)``, with ``answer`` the first token of the correct
output; the AIE of the head is the mean CIE over prompts.

This is one patching experiment per head, and it runs on the patching engine: the engine's *clean*
run is the shuffled-label prompt, its *corrupt* run is the same prompt with every head's last-token
activation replaced by its mean (a mean-ablation intervention on every layer), and ``noising``
patches one head's last-token activation at a time from the latter into the former. Since only the
last position and layers from ``L`` on can change, each head costs one suffix forward of one token
through the remaining blocks, batched over heads and prompts, instead of a full forward per head
per prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int

from interp.errors import InvalidArgumentError
from interp.interventions import Intervention, MeanAblate
from interp.model import Model
from interp.patching import Cell, PatchingEngine
from interp.sites import site_name
from interp.steering.fv_tasks import ICLPrompts
from interp.tasks import PatchingTask, get_metric


def _chunks(n: int, size: int) -> list[range]:
    if size < 1:
        raise InvalidArgumentError(f"batch_size must be at least 1, got {size}")
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def predict_first_tokens(
    model: Model, prompts: Sequence[str], interventions: Sequence[Intervention] = (), batch_size: int = 32
) -> Int[torch.Tensor, " prompt"]:
    """The model's top-1 next token after each prompt, with ``interventions`` applied (left padding:
    position ``-1`` is every prompt's last token)."""
    predictions = []
    for rows in _chunks(len(prompts), batch_size):
        logits = model.run([prompts[i] for i in rows], interventions)
        predictions.append(logits[:, -1].argmax(dim=-1).cpu())
    return torch.cat(predictions)


def correct_mask(
    model: Model, prompts: ICLPrompts, interventions: Sequence[Intervention] = (), batch_size: int = 32
) -> Bool[torch.Tensor, " prompt"]:
    """Whether the model's top-1 next token is each prompt's answer token."""
    return predict_first_tokens(model, prompts.prompts, interventions, batch_size) == prompts.answer_ids.cpu()


def mean_head_activations(
    model: Model, prompts: ICLPrompts, batch_size: int = 32
) -> Float[torch.Tensor, "layer head d_head"]:
    """The mean of every head's last-token activation (``hook_z``) over ``prompts``, accumulated in
    float64 and returned in the model's dtype."""
    if len(prompts) == 0:
        raise InvalidArgumentError("no prompts to average head activations over")
    sites = [site_name("z", layer) for layer in range(model.dims.n_layers)]
    total = torch.zeros(model.dims.n_layers, model.dims.n_heads, model.dims.d_head, dtype=torch.float64)
    for rows in _chunks(len(prompts), batch_size):
        _, cache = model.run_with_cache([prompts.prompts[i] for i in rows], sites=sites, positions=[-1])
        for layer, site in enumerate(sites):
            total[layer] += cache[site][:, -1].to(device="cpu", dtype=torch.float64).sum(dim=0)
    return (total / len(prompts)).to(model.dtype)


@dataclass(frozen=True)
class HeadEffects:
    """Causal indirect effects of heads on shuffled-label prompts.

    Attributes:
        layers, heads: the layers and head indices measured (rows and columns of ``cie``).
        cie: ``P_patched(answer) - P_shuffled(answer)`` per (layer, head, prompt).
        shuffled_prob: ``P_shuffled(answer)`` per prompt, the unpatched baseline.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    cie: Float[torch.Tensor, "layer head prompt"]
    shuffled_prob: Float[torch.Tensor, " prompt"]

    @property
    def aie(self) -> Float[torch.Tensor, "layer head"]:
        """The average indirect effect of each head (mean CIE over prompts)."""
        return self.cie.mean(dim=-1)


def _engine_task(model: Model, prompts: ICLPrompts, means: torch.Tensor, layers: Sequence[int]) -> PatchingTask:
    """Clean run: the shuffled-label prompts; corrupt run: the same with every measured layer's
    last-token head activations replaced by their means."""
    batch, same = model.tokenize_pairs(prompts.prompts, prompts.prompts)
    answers = prompts.answer_ids.to(model.device)
    ablations = tuple(
        MeanAblate(site=site_name("z", layer), mean=means[layer].to(model.device, model.dtype), positions=(-1,))
        for layer in layers
    )
    return PatchingTask(
        name="shuffled-labels",
        clean_prompts=prompts.prompts,
        corrupt_prompts=prompts.prompts,
        clean=batch,
        corrupt=same,
        answers=answers,
        wrong=answers,
        corrupt_interventions=ablations,
    )


def head_indirect_effects(
    model: Model,
    shuffled: ICLPrompts,
    means: Float[torch.Tensor, "layer head d_head"],
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_rows: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> HeadEffects:
    """The causal indirect effect of each head (``layers`` x ``heads``, default all) on each prompt.

    Args:
        model: the model.
        shuffled: shuffled-label prompts with their answer tokens.
        means: mean last-token head activations on clean prompts (:func:`mean_head_activations`).
        layers, heads: which heads to measure.
        max_rows: rows per patched forward (default: sized by the engine's memory budget).
        progress: called with the number of heads finished after each batch.
    """
    dims = model.dims
    if tuple(means.shape) != (dims.n_layers, dims.n_heads, dims.d_head):
        raise InvalidArgumentError(
            f"means have shape {tuple(means.shape)}, but the model's head activations are "
            f"(layers={dims.n_layers}, heads={dims.n_heads}, d_head={dims.d_head}); compute them on this model"
        )
    layers = tuple(range(dims.n_layers)) if layers is None else tuple(int(layer) for layer in layers)
    heads = tuple(range(dims.n_heads)) if heads is None else tuple(int(head) for head in heads)
    bad = [layer for layer in layers if not 0 <= layer < dims.n_layers] + [h for h in heads if not 0 <= h < dims.n_heads]
    if bad or not layers or not heads:
        raise InvalidArgumentError(
            f"layers {list(layers)} and heads {list(heads)} must be non-empty and lie in 0..{dims.n_layers - 1} "
            f"and 0..{dims.n_heads - 1}"
        )
    task = _engine_task(model, shuffled, means, layers)
    last = task.clean.shape[1] - 1
    groups = [
        (Cell(site=site_name("z", layer), positions=(last,), heads=(head,)),) for layer in layers for head in heads
    ]
    engine = PatchingEngine(model, task, get_metric("prob"), direction="noising", max_rows=max_rows)
    patched = engine.run(groups, progress=progress)
    baseline = engine.baselines["clean"]
    cie = (patched - baseline).reshape(len(layers), len(heads), len(shuffled))
    return HeadEffects(layers, heads, cie, baseline)
