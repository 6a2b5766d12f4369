"""GradDrop against an independent recompute, on every tiny family.

The reference here shares nothing with :mod:`interp.attribution.atp_star` but the capture layer:
for each layer ``l`` it runs the base prompts again with block ``l``'s output replaced by an
autograd function that returns the block's output unchanged and sends the whole incoming gradient
to the block's *input* (the skip path), none into the block. That is "block l's write held at its
value": forward values are bit-identical, and the gradient reaches earlier layers through the
residual stream only. Every node's per-layer estimate ``I_l(n)`` is then ``delta . grad`` under that
backward pass, summed over each sweep's cells by hand; query and key nodes use the QK fix with the
pattern gradient of the same held run when ``qk_fix`` is on, and plain AtP otherwise.

``atp_star`` computes the same terms another way (one vector-Jacobian product from the block's
input, seeded with the gradient at its output), so agreement to float64 precision checks both the
per-drop terms, signed, and their combination into the ranking score.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import interp
from interp.attribution import atp, atp_star
from interp.attribution.atp_star import grad_drop_scores, grad_drop_terms
from interp.attribution.qk import key_effects, query_effects
from interp.attribution.runs import ForwardRun, forward
from interp.errors import InterpError
from interp.patching import SWEEPS
from interp.sites import site_name
from interp.tasks import get_metric, ioi_task

from tests.conftest import no_hooks_left

CANDIDATES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head_z", "head_q", "head_k", "head_v",
              "head_q_by_pos", "head_k_by_pos", "neuron")
RESIDUAL = ("resid_pre", "resid_mid", "resid_post")


class SkipPathOnly(torch.autograd.Function):
    """Forward: the block's output. Backward: the incoming gradient goes to the block's input only."""

    @staticmethod
    def forward(ctx: Any, block_input: torch.Tensor, block_output: torch.Tensor) -> torch.Tensor:
        return block_output.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _hold_block(model: interp.Model, layer: int) -> torch.utils.hooks.RemovableHandle:
    """A raw hook on decoder layer ``layer`` that holds its write (runs before the capture hooks)."""

    def hold(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        block_input = args[0] if args else kwargs["hidden_states"]
        if isinstance(output, tuple):
            return (SkipPathOnly.apply(block_input, output[0]), *output[1:])
        return SkipPathOnly.apply(block_input, output)

    return model.arch.layers()[layer].register_forward_hook(hold, with_kwargs=True, prepend=True)


def _sweeps(model: interp.Model) -> list[str]:
    names = []
    for sweep in CANDIDATES:
        try:
            model.site(site_name(SWEEPS[sweep][0], 0))
        except InterpError:
            continue
        names.append(sweep)
    return names


def _cells(sweep: str, entries: torch.Tensor) -> torch.Tensor:
    """Per-layer cell sums written out for each geometry (site layouts: (b, pos, d), (b, pos, head, d),
    (b, pos, neuron))."""
    if sweep in RESIDUAL or sweep in ("attn_out", "mlp_out"):
        return entries.sum(dim=-1)
    if sweep.endswith("_by_pos"):
        return entries.sum(dim=-1).permute(0, 2, 1)
    if sweep.startswith("head_"):
        return entries.sum(dim=(1, 3))
    assert sweep == "neuron"
    return entries.sum(dim=1)


def _term(sweep: str, layer: int, qk_fix: bool, base: ForwardRun, source: ForwardRun, grads: dict) -> torch.Tensor:
    kind = SWEEPS[sweep][0]
    if qk_fix and kind in ("q", "k"):
        effects = query_effects if kind == "q" else key_effects
        pattern = site_name("pattern", layer)
        return effects(base.attention[layer], source.attention[layer], grads[pattern], sweep.endswith("_by_pos"))
    name = site_name(kind, layer)
    return _cells(sweep, (source.acts[name] - base.acts[name]) * grads[name])


def reference_terms(model: interp.Model, task: Any, sweeps: list[str], qk_fix: bool) -> dict[str, torch.Tensor]:
    """Per-drop estimates ``(drop, example, layer, ...)`` by holding each block's write in turn."""
    metric = get_metric("logit_diff")
    n_layers = model.dims.n_layers
    sites = sorted({site_name(SWEEPS[s][0], layer) for s in sweeps for layer in range(n_layers)}
                   | {site_name(kind, layer) for kind in ("pattern", "resid_post") for layer in range(n_layers)},
                   key=model.sites.index)
    source = forward(model, task, "clean", metric, sites, record_attention=True)
    terms: dict[str, list[torch.Tensor]] = {s: [] for s in sweeps}
    for drop in range(n_layers):
        handle = _hold_block(model, drop)
        try:
            base = forward(model, task, "corrupt", metric, sites, grad_sites=sites, record_attention=True)
        finally:
            handle.remove()
        grads = base.grads(sites)
        if "resid_mid" in sweeps:
            # resid_mid = resid_pre + attn_out lies on the skip path; the capture layer writes it through
            # the attention output, which the hold cuts, so take the gradient at the block's output
            mid = site_name("resid_mid", drop)
            grads[mid] = grads[site_name("resid_post", drop)]
        for sweep in sweeps:
            per_layer = [_term(sweep, layer, qk_fix, base, source, grads) for layer in range(n_layers)]
            terms[sweep].append(torch.stack(per_layer, dim=1))
    return {sweep: torch.stack(stack) for sweep, stack in terms.items()}


@pytest.mark.parametrize("qk_fix", [True, False], ids=["qk_fix", "plain"])
def test_grad_drop_equals_holding_each_block_write(tiny64: interp.Model, qk_fix: bool) -> None:
    model = tiny64
    task = ioi_task(model, n=3, seed=11)
    sweeps = _sweeps(model)
    n_layers = model.dims.n_layers
    expected = reference_terms(model, task, sweeps, qk_fix)
    got = grad_drop_terms(model, task, sweeps, qk_fix=qk_fix)
    stars = atp_star(model, task, sweeps, qk_fix=qk_fix, ranking="unsigned")
    signed = atp_star(model, task, sweeps, qk_fix=qk_fix)
    plain = atp(model, task, sweeps)
    assert no_hooks_left(model)
    for sweep in sweeps:
        reference = expected[sweep].cpu()  # results are CPU tensors whatever the model's device
        torch.testing.assert_close(got[sweep], reference, rtol=1e-7, atol=1e-9, msg=sweep)
        divisor = n_layers if sweep in RESIDUAL else n_layers - 1
        torch.testing.assert_close(stars[sweep].scores, reference.abs().sum(dim=0) / divisor, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(signed[sweep].ranking(), reference.mean(dim=1).abs().sum(dim=0) / divisor,
                                   rtol=1e-7, atol=1e-9)
        own_layer_term = torch.stack([reference[layer, :, layer] for layer in range(n_layers)])
        if sweep not in RESIDUAL:  # a node inside block l gets no gradient when l's write is held
            assert own_layer_term.abs().max() == 0, sweep
        # holding an *earlier* block's write leaves a node's gradient alone: terms with drop < layer are
        # the undropped estimate (AtP, or AtP + QK fix for q and k)
        undropped = plain[sweep].effects() if not (qk_fix and SWEEPS[sweep][0] in ("q", "k")) else None
        if undropped is None:
            undropped = atp_star(model, task, sweep, qk_fix=True, grad_drop=False).effects()
        for drop in range(n_layers - 1):
            torch.testing.assert_close(reference[drop][:, drop + 1:], undropped[:, drop + 1:].double(),
                                       rtol=1e-7, atol=1e-9, msg=f"{sweep} drop {drop}")
    if qk_fix and "head_q" in sweeps:  # the QK fix is applied to q and k only, and changes them
        fixed = reference_terms(model, task, ["head_q", "head_k", "head_z"], qk_fix=False)
        assert not torch.allclose(fixed["head_q"], expected["head_q"])
        torch.testing.assert_close(fixed["head_z"], expected["head_z"])


def test_signed_ranking_takes_the_absolute_value_after_averaging() -> None:
    terms = torch.tensor([[[1.0], [-3.0]], [[2.0], [2.0]]])  # (drop, example, cell)
    unsigned = grad_drop_scores(terms, divisor=2, ranking="unsigned")
    signed = grad_drop_scores(terms, divisor=2, ranking="signed")
    torch.testing.assert_close(unsigned, torch.tensor([[(1.0 + 2.0) / 2], [(3.0 + 2.0) / 2]]))
    torch.testing.assert_close(signed.mean(dim=0), torch.tensor([(abs(1.0 - 3.0) / 2 + 2.0) / 2]))
