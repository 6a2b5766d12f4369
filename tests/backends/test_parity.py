"""The same weights through our Hugging Face backend, a TransformerBridge and an nnsight model give
the same numbers: site activations, patching tables, AtP and IG estimates, generated tokens, and what
steering and CAVs read and write (residual activations at the last token, logits under an ``Add``).

Tolerances, on the largest difference relative to the larger of 1 and the largest entry of the
reference tensor: 1e-5 in float32 and 1e-9 in float64, except the bridge in float64 on rotary families:
its rotary attention takes the softmax in float32 whatever the model's dtype (patterns differ by
about 1e-7, later sites by up to about 1e-5), so there it is held to float32 precision. It also
refuses left-padded float64 batches on those families (its attention turns the padding rows into
NaN), so its float64 checks use prompts of one length; GPT-2 is padded in both dtypes and matches
to 1e-9 in float64.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp import Add
from interp.attribution import atp, integrated_gradients
from interp.models.tiny import TINY_MODELS
from interp.patching import patch_sweep
from interp.tasks import PatchingTask
from tests.backends.conftest import BACKENDS

FAMILIES = ("tiny-llama", "tiny-gpt2")
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-9}

SAME_LENGTH = (
    ["When Mary and John went to the store, John gave a drink to", "When Tom and Anna went to the store, Anna gave a book to"],
    ["When Kate and Paul went to the store, James gave a drink to", "When Sarah and Bob went to the store, Alice gave a book to"],
    [" Mary", " Tom"],
    [" John", " Anna"],
)
PADDED = (
    [SAME_LENGTH[0][0], "After the lunch, Alice and Bob went to the park. Bob gave a ball to"],
    [SAME_LENGTH[1][0], "After the lunch, Kate and Paul went to the park. Sarah gave a ball to"],
    [" Mary", " Alice"],
    [" John", " Bob"],
)
PROMPTS = ["When Mary and John went to the store, John gave", "After the lunch, Tom and"]


def _float32_softmax(name: str, backend: str, dtype: torch.dtype) -> bool:
    return backend == "transformer_lens" and dtype == torch.float64 and name != "tiny-gpt2"


def _padded_ok(name: str, backend: str, dtype: torch.dtype) -> bool:
    return not _float32_softmax(name, backend, dtype)


def _task(model: interp.Model, padded: bool) -> PatchingTask:
    clean, corrupt, answers, wrong = PADDED if padded else SAME_LENGTH
    return PatchingTask.from_prompts(model, "ioi-pairs", clean, corrupt, answers, wrong)


def _close(ours: torch.Tensor, theirs: torch.Tensor, dtype: torch.dtype, what: str, atol: float | None = None) -> None:
    """``theirs`` within tolerance of ``ours``, relative to the larger of 1 and ``ours``' largest entry."""
    assert theirs.shape == ours.shape, f"{what}: shapes {tuple(theirs.shape)} vs {tuple(ours.shape)}"
    assert bool(ours.isfinite().all() and theirs.isfinite().all()), f"{what}: non-finite values"
    tolerance = (atol or TOLERANCE[dtype]) * max(1.0, float(ours.abs().max()))
    error = float((theirs - ours).abs().max()) if ours.numel() else 0.0
    assert error <= tolerance, f"{what}: largest difference {error:.3g} > {tolerance:.3g}"


def _atol(name: str, backend: str, dtype: torch.dtype) -> float:
    return 5e-5 if _float32_softmax(name, backend, dtype) else TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FAMILIES)
def test_every_site_and_the_logits_match(make, name: str, backend: str, dtype: torch.dtype) -> None:
    reference, _, model = make(name, backend, dtype)
    assert model.sites == reference.sites
    prompts = PROMPTS if _padded_ok(name, backend, dtype) else SAME_LENGTH[0]
    batch = reference.to_tokens(prompts)
    real = batch.attention_mask.bool()
    logits, cache = reference.run_with_cache(batch, sites=reference.sites)
    their_logits, their_cache = model.run_with_cache(batch, sites=model.sites)
    atol = _atol(name, backend, dtype)
    _close(logits[real], their_logits[real], dtype, "logits", atol)
    for site in reference.sites:
        ours, theirs = cache[site], their_cache[site]
        if site.endswith("hook_pattern"):  # rows of padding queries differ by convention; real query rows
            ours, theirs = ours.transpose(1, 2)[real], theirs.transpose(1, 2)[real]
        else:
            ours, theirs = ours[real], theirs[real]
        _close(ours, theirs, dtype, site, atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FAMILIES)
def test_patching_tables_and_attribution_match(make, name: str, backend: str, dtype: torch.dtype) -> None:
    reference, _, model = make(name, backend, dtype)
    padded, atol = _padded_ok(name, backend, dtype), _atol(name, backend, dtype)
    task, their_task = _task(reference, padded), _task(model, padded)
    assert torch.equal(task.clean.input_ids, their_task.clean.input_ids)
    for sweep in ("resid_pre", "attn_out", "head_z"):
        ours, theirs = patch_sweep(reference, task, sweep), patch_sweep(model, their_task, sweep)
        _close(ours.values, theirs.values, dtype, f"patching {sweep}", atol)
        assert ours.values.abs().max() > 1e-3, "a table of zeros would match anything"
        if backend == "nnsight":  # the same engine savings: the same work
            assert theirs.cost.forward_passes == ours.cost.forward_passes
            assert theirs.cost.flops == ours.cost.flops
        else:  # no KV cache: forwards start at the block, over every position
            assert theirs.cost.flops >= ours.cost.flops and theirs.cost.flops < theirs.cost.naive_flops
    sweeps = ["resid_pre", "head_z", "mlp_out"]
    ours, theirs = atp(reference, task, sweeps), atp(model, their_task, sweeps)
    for sweep in sweeps:
        _close(ours[sweep].values, theirs[sweep].values, dtype, f"AtP {sweep}", atol)
    ours = integrated_gradients(reference, task, "resid_pre", steps=3)
    theirs = integrated_gradients(model, their_task, "resid_pre", steps=3)
    _close(ours.values, theirs.values, dtype, "IG resid_pre", atol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FAMILIES)
def test_steering_reads_and_writes_match(make, name: str, backend: str) -> None:
    """What a CAV trains on (resid_post at the last token) and what steering does (an Add at a
    residual site, in a forward and in generation) give the same numbers."""
    reference, _, model = make(name, backend, torch.float32)
    direction = torch.randn(reference.dims.d_model, generator=torch.Generator().manual_seed(1))
    steer = [Add(site="blocks.1.hook_resid_post", vector=direction, scale=4.0)]
    site = "blocks.1.hook_resid_post"
    for interventions in ((), steer):
        ours = reference.run_with_cache(PROMPTS, sites=[site], positions=[-1], interventions=interventions)
        theirs = model.run_with_cache(PROMPTS, sites=[site], positions=[-1], interventions=interventions)
        _close(ours[1][site], theirs[1][site], torch.float32, f"last-token {site}")
        _close(ours[0][:, -1], theirs[0][:, -1], torch.float32, "last-token logits")
    cached = backend == "nnsight"
    ours = reference.generate(PROMPTS, steer, max_new_tokens=6, return_logits=True)
    theirs = model.generate(PROMPTS, steer, max_new_tokens=6, return_logits=True, use_cache=cached)
    assert torch.equal(ours.tokens, theirs.tokens)
    _close(ours.logits, theirs.logits, torch.float32, "generation logits")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [n for n in TINY_MODELS if n not in FAMILIES])
def test_every_family_gives_the_same_sites(make, name: str, backend: str) -> None:
    """Every site of every tiny family, padded, in float32 (GPT-2 and Llama are covered above)."""
    reference, _, model = make(name, backend, torch.float32)
    batch = reference.to_tokens(PROMPTS)
    real = batch.attention_mask.bool()
    logits, cache = reference.run_with_cache(batch, sites=reference.sites)
    their_logits, their_cache = model.run_with_cache(batch, sites=reference.sites)
    _close(logits[real], their_logits[real], torch.float32, "logits")
    for site in reference.sites:
        ours, theirs = cache[site], their_cache[site]
        if site.endswith("hook_pattern"):
            ours, theirs = ours.transpose(1, 2)[real], theirs.transpose(1, 2)[real]
        else:
            ours, theirs = ours[real], theirs[real]
        _close(ours, theirs, torch.float32, site)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FAMILIES)
def test_cav_and_steering_directions_match(make, name: str, backend: str) -> None:
    """The directions the concepts and steering packages build from the same texts agree across backends."""
    from interp.concepts import TokenSelector, read_layers, train_cavs
    from interp.steering import ContrastPair, ContrastSet, build_vectors

    reference, _, model = make(name, backend, torch.float32)
    names = ["Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah"]
    concept = [f"{a} and {b} went to the market." for a, b in zip(names, names[1:])]
    random = [f"The {w} was on the table by the door." for w in ("cup", "book", "key", "lamp", "coin", "pen", "hat")]
    layers = [0, 1]
    cavs = []
    for m in (reference, model):
        positive = read_layers(m, concept, "resid_post", layers, TokenSelector("last"))
        negative = read_layers(m, random, "resid_post", layers, TokenSelector("last"))
        cavs.append(train_cavs(positive, negative, "resid_post", layers, method="logistic", seed=0))
    _close(cavs[0].vectors, cavs[1].vectors, torch.float32, "CAV directions", atol=1e-4)
    contrast = ContrastSet(pairs=tuple(ContrastPair(positive=p, negative=n) for p, n in zip(concept, random)))
    ours = build_vectors(reference, contrast, "resid_post", layers, ("mean_diff",))["mean_diff"]
    theirs = build_vectors(model, contrast, "resid_post", layers, ("mean_diff",))["mean_diff"]
    _close(ours.vectors, theirs.vectors, torch.float32, "steering vectors")
    assert ours.vectors.abs().max() > 1e-3
