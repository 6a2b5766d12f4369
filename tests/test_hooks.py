"""The hook layer on every tiny family, checked against independent references.

References are plain torch hooks on the HF modules, the model's own weights, float64 autograd on a
leaf tensor, and central finite differences: never the code path under test.
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

import interp
from interp import Add, MeanAblate, Patch, Replace, Scale, Zero
from interp.interventions import negate as builtin_negate
from interp.sites import site_name
from tests.conftest import PROMPTS, no_hooks_left


def _sites_without_patterns(model: interp.Model) -> list[str]:
    return [s for s in model.sites if not s.endswith("hook_pattern")]


def _raw_input(module: nn.Module, run) -> torch.Tensor:
    """The first input of ``module`` during ``run()``, through a plain torch pre-hook."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone()),
        with_kwargs=True,
    )
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


def _resid_mid_reference_module(model: interp.Model, layer: int) -> nn.Module:
    block = model.arch.layers()[layer]
    for name in ("pre_feedforward_layernorm", "ln_2", "post_attention_layernorm"):
        if hasattr(block, name):
            return getattr(block, name)
    raise AssertionError("no reference module")


def _heads_through_out_proj(model: interp.Model, layer: int, z: torch.Tensor) -> torch.Tensor:
    """sum_h z_h W_O[h] + b_O, computed from the weights directly."""
    proj = model.arch.out_proj(layer)
    n_heads, d_head = model.dims.n_heads, model.dims.d_head
    if model.arch.family == "gpt2":  # Conv1D: weight is (in, out)
        weight = proj.weight.view(n_heads, d_head, -1)
    else:  # Linear: weight is (out, in)
        weight = proj.weight.view(-1, n_heads, d_head).permute(1, 2, 0)
    out = torch.einsum("bphd,hdo->bpo", z, weight)
    if proj.bias is not None:
        out = out + proj.bias
    block = model.arch.layers()[layer]
    if hasattr(block, "post_feedforward_layernorm"):  # Gemma 2/3: norm after attention
        out = block.post_attention_layernorm(out)
    return out


def test_capture_hooks_leave_logits_bitwise_identical(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    base = tiny.run(batch)
    logits, cache = tiny.run_with_cache(batch)
    assert torch.equal(base, logits)
    assert set(cache) == set(_sites_without_patterns(tiny))
    assert torch.equal(cache["logits"], base)
    assert no_hooks_left(tiny)


def test_gradient_capture_leaves_logits_bitwise_identical(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    base = tiny.run(batch)
    logits, cache = tiny.run_with_cache(batch, grads=lambda lg: lg[:, -1, 5].sum())
    assert torch.equal(base, logits)
    assert set(cache.grads) == set(cache)
    assert not any(p.grad is not None for p in tiny.hf.parameters()), "parameters must not accumulate grads"


def test_patching_captured_values_back_changes_nothing(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    base, cache = tiny.run_with_cache(batch)
    for name in _sites_without_patterns(tiny):
        patched = tiny.run(batch, [Patch(site=name, source=cache[name])])
        if name.endswith("hook_resid_mid"):  # written as new - resid_pre: one rounding
            torch.testing.assert_close(patched, base, rtol=0, atol=1e-5)
        else:
            assert torch.equal(patched, base), name


def test_soft_capped_attention_is_never_run_through_sdpa() -> None:
    """SDPA has no attention-logit soft-capping: a Gemma 2 model set to SDPA (the default of older
    transformers) is switched to the eager function, so its logits are the model's own."""
    from interp.models.tiny import build_tiny, tiny_tokenizer

    reference = build_tiny("tiny-gemma2")
    reference.config._attn_implementation = "eager"  # HF's own eager: applies the soft cap
    on_sdpa = build_tiny("tiny-gemma2")
    on_sdpa.config._attn_implementation = "sdpa"
    model = interp.Model(on_sdpa, tiny_tokenizer(), name="tiny-gemma2")
    assert on_sdpa.config._attn_implementation == "interp_eager"
    batch = model.to_tokens(PROMPTS)
    expected = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    real = batch.attention_mask.bool()
    # left on SDPA, newer transformers refuse the soft cap and older ones drop it (logits off by ~5 here)
    torch.testing.assert_close(model.run(batch)[real], expected[real], rtol=0, atol=1e-5)


def test_pattern_site_matches_default_attention(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    base = tiny.run(batch)
    implementation = tiny.hf.config._attn_implementation
    patterns = [s for s in tiny.sites if s.endswith("hook_pattern")]
    logits, cache = tiny.run_with_cache(batch, sites=patterns)
    real = batch.attention_mask.bool()
    torch.testing.assert_close(logits[real], base[real], rtol=0, atol=5e-5)
    pattern = cache[patterns[0]]
    assert pattern.shape == (3, tiny.dims.n_heads, batch.shape[1], batch.shape[1])
    rows = pattern[real.unsqueeze(1).expand(-1, tiny.dims.n_heads, -1)]
    torch.testing.assert_close(rows.sum(-1), torch.ones_like(rows.sum(-1)))
    real_queries = real[:, None, :, None]
    assert torch.all(torch.where(real_queries, pattern.triu(diagonal=1), 0) == 0), "causal: no attention ahead"
    pad_keys = ~real[:, None, None, :]
    assert torch.all(torch.where(real_queries & pad_keys, pattern, 0) == 0), "no attention to padding"
    assert tiny.hf.config._attn_implementation == implementation, "attention implementation restored"
    # patching the pattern back is a no-op; a uniform pattern changes the output
    same = tiny.run(batch, [Patch(site=patterns[0], source=pattern)])
    torch.testing.assert_close(same[real], logits[real], rtol=0, atol=1e-6)


def test_residual_stream_identities(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    _, cache = tiny.run_with_cache(batch)
    n = tiny.dims.n_layers
    for layer in range(n - 1):
        assert torch.equal(cache[site_name("resid_post", layer)], cache[site_name("resid_pre", layer + 1)])
    for layer in range(n):
        pre, attn, mlp = (cache[site_name(k, layer)] for k in ("resid_pre", "attn_out", "mlp_out"))
        post = cache[site_name("resid_post", layer)]
        if tiny.arch.parallel_residual:
            torch.testing.assert_close(post, pre + attn + mlp, rtol=1e-6, atol=1e-5)
            continue
        mid = cache[site_name("resid_mid", layer)]
        reference = _raw_input(_resid_mid_reference_module(tiny, layer), lambda: tiny.run(batch))
        assert torch.equal(mid, reference), "resid_mid must equal the stream the MLP reads"
        torch.testing.assert_close(mid, pre + attn, rtol=0, atol=0)
        torch.testing.assert_close(post, mid + mlp, rtol=0, atol=0)


def test_z_through_output_projection_sums_to_attn_out(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    _, cache = tiny.run_with_cache(batch)
    for layer in range(tiny.dims.n_layers):
        z = cache[site_name("z", layer)]
        assert z.shape[2:] == (tiny.dims.n_heads, tiny.dims.d_head)
        with torch.no_grad():
            rebuilt = _heads_through_out_proj(tiny, layer, z)
        torch.testing.assert_close(rebuilt, cache[site_name("attn_out", layer)], rtol=1e-5, atol=1e-5)


def test_qkv_views_are_gqa_aware(tiny: interp.Model) -> None:
    _, cache = tiny.run_with_cache(PROMPTS[0])
    assert cache["blocks.0.attn.hook_q"].shape[2] == tiny.dims.n_heads
    assert cache["blocks.0.attn.hook_k"].shape[2] == tiny.dims.n_kv_heads
    assert cache["blocks.0.attn.hook_v"].shape[2] == tiny.dims.n_kv_heads


def test_zeroing_one_head_changes_only_what_it_should(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    _, clean = tiny.run_with_cache(batch)
    layer, head, position = 1, 2, 9
    real = batch.attention_mask.bool()
    z_name = site_name("z", layer)
    _, ablated = tiny.run_with_cache(batch, interventions=[Zero(site=z_name, heads=[head], positions=[position], rows=[0])])
    z_new, z_old = ablated[z_name], clean[z_name]
    assert torch.all(z_new[0, position, head] == 0)
    keep = torch.ones_like(z_old, dtype=torch.bool)
    keep[0, position, head] = False
    assert torch.equal(z_new[keep], z_old[keep])
    assert torch.equal(ablated[site_name("resid_pre", layer)], clean[site_name("resid_pre", layer)])
    attn_new = ablated[site_name("attn_out", layer)]
    expected = z_old.clone()
    expected[0, position, head] = 0
    with torch.no_grad():
        torch.testing.assert_close(attn_new, _heads_through_out_proj(tiny, layer, expected), rtol=1e-5, atol=1e-5)
    for name in _sites_without_patterns(tiny)[1:]:
        site = tiny.site(name)
        if site.layer is not None and site.layer < layer:
            assert torch.equal(ablated[name], clean[name]), name
        # causality: earlier real positions never change (pad positions attend to anything)
        early = real[0, :position]
        assert torch.equal(ablated[name][0, :position][early], clean[name][0, :position][early]), name
        assert torch.equal(ablated[name][1:], clean[name][1:]), name
    assert not torch.equal(ablated["logits"][0, position:], clean["logits"][0, position:])


def test_interventions_compose_in_one_forward(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    _, clean = tiny.run_with_cache(batch)
    name = site_name("resid_post", 0)
    vector = torch.randn(tiny.dims.d_model, generator=torch.Generator().manual_seed(1)).to(tiny.device)
    steps = [Scale(site=name, factor=2.0, positions=[-1]), Add(site=name, vector=vector, scale=0.5, positions=[-1])]
    _, cache = tiny.run_with_cache(batch, sites=[name], interventions=steps)
    expected = clean[name].clone()
    expected[:, -1] = expected[:, -1] * 2.0 + 0.5 * vector
    assert torch.equal(cache[name], expected)


def test_mean_ablation_and_replace(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    _, clean = tiny.run_with_cache(batch)
    name = site_name("mlp_post", 1)
    ablate = MeanAblate.from_activations(name, clean[name])
    _, cache = tiny.run_with_cache(batch, sites=[name], interventions=[ablate])
    torch.testing.assert_close(cache[name], clean[name].flatten(0, 1).mean(0).expand_as(clean[name]))
    _, cache = tiny.run_with_cache(batch, sites=[name], interventions=[Replace(site=name, fn=negate, heads=None)])
    assert torch.equal(cache[name], -clean[name])


@interp.register_replace_fn
def negate(value: torch.Tensor, site: str) -> torch.Tensor:
    return -value


def halve(value: torch.Tensor, site: str) -> torch.Tensor:
    return value / 2


@pytest.mark.parametrize(
    "kind", ["embed", "resid_pre", "q", "k", "v", "pattern", "z", "attn_out", "resid_mid", "mlp_pre", "mlp_post", "mlp_out", "normalized"]
)
def test_site_gradients_match_autograd_in_float64(kind: str) -> None:
    for family in ("tiny-llama", "tiny-gpt2", "tiny-gemma2", "tiny-neox-sequential"):
        model = interp.load_model(family, dtype=torch.float64)
        name = site_name(kind, 1) if kind not in ("embed", "normalized") else site_name(kind)
        batch = model.to_tokens(PROMPTS)
        a, b = model.token_id(" Mary"), model.token_id(" John")

        def metric(logits: torch.Tensor) -> torch.Tensor:
            return (logits[:, -1, a] - logits[:, -1, b]).sum()

        _, cache = model.run_with_cache(batch, sites=[name], grads=metric)
        ours = cache.grads[name]
        # reference: the same forward with the site replaced by a leaf, differentiated by autograd
        leaf = cache[name].clone().requires_grad_(True)
        with torch.enable_grad(), model.hooks([Patch(site=name, source=leaf)]) as session:
            reference = torch.autograd.grad(metric(model.forward(batch, session)), leaf)[0]
        torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-12)
        assert ours.abs().max() > 0
        # and a central finite difference on the largest entry (HF norms compute in float32, so a
        # float64 model still has float32 noise: a step of 1e-3 keeps it below the tolerance)
        index = tuple(int(i) for i in torch.unravel_index(ours.abs().argmax(), ours.shape))
        eps = 1e-3
        bump = torch.zeros_like(ours)
        bump[index] = eps
        up = metric(model.run(batch, [Add(site=name, vector=bump)]))
        down = metric(model.run(batch, [Add(site=name, vector=-bump)]))
        torch.testing.assert_close((up - down) / (2 * eps), ours[index], rtol=2e-3, atol=1e-5)


def test_padding_invariance(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    assert batch.attention_mask[2, 0] == 0, "shorter prompts are left-padded"
    logits, cache = tiny.run_with_cache(batch, sites=["blocks.2.hook_resid_post"], positions=[-1])
    for row, prompt in enumerate(PROMPTS):
        alone, alone_cache = tiny.run_with_cache(prompt, sites=["blocks.2.hook_resid_post"], positions=[-1])
        torch.testing.assert_close(logits[row, -1], alone[0, -1], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(cache["blocks.2.hook_resid_post"][row], alone_cache["blocks.2.hook_resid_post"][0], rtol=1e-4, atol=1e-4)


def test_hooks_removed_after_exception(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    base = tiny.run(batch)
    implementation = tiny.hf.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        with tiny.hooks(capture=["blocks.0.attn.hook_pattern", "blocks.1.hook_resid_mid" if "blocks.1.hook_resid_mid" in tiny.sites else "blocks.1.hook_resid_pre"]):
            raise RuntimeError("boom")
    assert no_hooks_left(tiny)
    assert tiny.hf.config._attn_implementation == implementation
    with pytest.raises(ValueError, match="hook failed"):
        tiny.run(batch, [Replace(site="blocks.1.hook_mlp_out", fn=explode)])
    assert no_hooks_left(tiny)
    assert torch.equal(tiny.run(batch), base)


def explode(value: torch.Tensor, site: str) -> torch.Tensor:
    raise ValueError("hook failed")


def test_hook_that_never_fires_raises() -> None:
    model = interp.load_model("tiny-llama")
    model.hf.config.num_hidden_layers = 2  # the forward now stops before block 2
    with pytest.raises(interp.HookNotFiredError, match="blocks.2.hook_resid_post"):
        model.run_with_cache(PROMPTS[0], sites=["blocks.2.hook_resid_post"])
    assert no_hooks_left(model)
    with pytest.raises(interp.HookNotFiredError, match="never fired"):
        with model.hooks(capture=["blocks.0.hook_resid_post"]):
            pass


def test_bad_positions_heads_and_rows_are_clear_errors(tiny: interp.Model) -> None:
    batch = tiny.to_tokens(PROMPTS)
    width = batch.shape[1]
    with pytest.raises(interp.InterventionError, match=rf"positions \[{width}\] out of range .*size {width}"):
        tiny.run(batch, [Zero(site="blocks.0.hook_resid_pre", positions=[width])])
    with pytest.raises(interp.InterventionError, match="heads \\[9\\] out of range"):
        tiny.run(batch, [Zero(site="blocks.0.attn.hook_z", heads=[9])])
    with pytest.raises(interp.InterventionError, match="has no head axis"):
        tiny.run(batch, [Zero(site="blocks.0.hook_resid_pre", heads=[0])])
    with pytest.raises(interp.InterventionError, match="rows \\[5\\] out of range"):
        tiny.run(batch, [Zero(site="blocks.0.hook_resid_pre", rows=[5])])
    with pytest.raises(interp.InterventionError, match="positions \\[99\\] out of range"):
        tiny.run_with_cache(batch, sites=["logits"], positions=[99])
    with pytest.raises(interp.InterventionError, match="does not broadcast"):
        tiny.run(batch, [Add(site="blocks.0.hook_resid_pre", vector=torch.ones(7))])
    assert no_hooks_left(tiny)


def test_mismatched_pair_lengths_name_the_pair(tiny: interp.Model) -> None:
    clean = ["When Mary and John went to the store", "When Alice and Bob went to the park"]
    corrupt = ["When Mary and John went to the store", "When Alice and Bob went to the big old park"]
    with pytest.raises(interp.TokenizationError, match="pair 1 has different token lengths"):
        tiny.tokenize_pairs(clean, corrupt)
    a, b = tiny.tokenize_pairs(clean, ["When Anna and Tom went to the store", "When Kate and Paul went to the park"])
    assert a.shape == b.shape


def test_training_mode_is_refused(tiny: interp.Model) -> None:
    tiny.hf.train()
    with pytest.raises(interp.ModelStateError, match="training mode"):
        tiny.run(PROMPTS[0])
    tiny.hf.eval()


def test_interventions_round_trip_through_files(tiny: interp.Model, tmp_path) -> None:
    batch = tiny.to_tokens(PROMPTS)
    _, cache = tiny.run_with_cache(PROMPTS[::-1])
    plan = [
        Patch(site="blocks.1.hook_resid_pre", source=cache["blocks.1.hook_resid_pre"], positions=[-1, -2]),
        Add(site="blocks.0.hook_mlp_out", vector=torch.ones(tiny.dims.d_model), scale=0.3, rows=[1]),
        Scale(site="blocks.2.attn.hook_z", factor=0.0, heads=[1]),
        Zero(site="blocks.0.attn.hook_v", heads=[0], positions=[3]),
        MeanAblate(site="blocks.2.mlp.hook_post", mean=cache["blocks.2.mlp.hook_post"].mean((0, 1))),
        Replace(site="blocks.1.hook_attn_out", fn=negate),
    ]
    interp.save_interventions(plan, tmp_path / "plan")
    loaded = interp.load_interventions(tmp_path / "plan")
    assert [type(i) for i in loaded] == [type(i) for i in plan]
    assert torch.equal(tiny.run(batch, loaded), tiny.run(batch, plan))
    with pytest.raises(interp.InterventionError, match="lambda or closure"):
        interp.save_interventions([Replace(site="logits", fn=lambda v, s: v)], tmp_path / "bad")


def test_loading_interventions_imports_nothing_a_file_names(tiny: interp.Model, tmp_path) -> None:
    batch = tiny.to_tokens(PROMPTS)
    interp.save_interventions([Replace(site="blocks.0.hook_mlp_out", fn=halve)], tmp_path / "plan")
    plan = json.loads((tmp_path / "plan" / "interventions.json").read_text())
    for path in ("os:system", "this:s"):  # importing `this` prints a poem: it must not happen
        plan[0]["fn"] = path
        (tmp_path / "plan" / "interventions.json").write_text(json.dumps(plan))
        modules = set(sys.modules)
        with pytest.raises(interp.InterventionError, match=rf"{path}.*register_replace_fn.*trust_code=True"):
            interp.load_interventions(tmp_path / "plan")
        assert set(sys.modules) == modules
    # an unregistered module-level function loads only when the file's code is trusted
    plan[0]["fn"] = f"{__name__}:halve"
    (tmp_path / "plan" / "interventions.json").write_text(json.dumps(plan))
    with pytest.raises(interp.InterventionError, match="not registered"):
        interp.load_interventions(tmp_path / "plan")
    loaded = interp.load_interventions(tmp_path / "plan", trust_code=True)
    assert torch.equal(tiny.run(batch, loaded), tiny.run(batch, [Replace(site="blocks.0.hook_mlp_out", fn=halve)]))
    # built-in functions are registered
    interp.save_interventions([Replace(site="blocks.0.hook_mlp_out", fn=builtin_negate)], tmp_path / "builtin")
    assert interp.load_interventions(tmp_path / "builtin")[0].fn is builtin_negate


def test_one_session_at_a_time_per_model() -> None:
    model = interp.load_model("tiny-llama")
    batch = model.to_tokens(PROMPTS)
    vector = torch.randn(model.dims.d_model, generator=torch.Generator().manual_seed(2))
    jobs = {
        "steer": lambda: model.run(batch, [Add(site="blocks.1.hook_resid_pre", vector=vector, scale=3.0)]),
        "ablate": lambda: model.run(batch, [Zero(site="blocks.0.attn.hook_z", heads=[0, 2])]),
        "plain": lambda: model.run(batch),
        "capture": lambda: model.run_with_cache(batch, sites=["blocks.2.hook_resid_post"])[1]["blocks.2.hook_resid_post"],
    }
    serial = {name: job() for name, job in jobs.items()}
    assert not torch.equal(serial["steer"], serial["plain"]) and not torch.equal(serial["ablate"], serial["plain"])

    def worker(names: list[str]) -> list[str]:
        return [name for _ in range(25) for name in names if not torch.equal(jobs[name](), serial[name])]

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(worker, names) for names in (["steer", "plain", "capture"], ["ablate", "plain"], ["plain", "steer", "ablate"])]
        mismatches = [name for future in futures for name in future.result()]
    assert not mismatches, mismatches
    assert no_hooks_left(model)


def test_a_forward_waits_for_another_threads_session() -> None:
    model = interp.load_model("tiny-gpt2")
    batch = model.to_tokens(PROMPTS[0])
    plain = model.run(batch)
    entered, finished = threading.Event(), threading.Event()
    seen: list[torch.Tensor] = []

    def other() -> None:
        entered.wait()
        seen.append(model.run(batch))
        finished.set()

    thread = threading.Thread(target=other)
    thread.start()
    with model.hooks([Zero(site="blocks.0.hook_mlp_out")]) as session:
        entered.set()
        assert not finished.wait(0.5), "a plain forward ran while another thread's hooks were registered"
        with model.hooks() as nested:  # the same thread may nest
            assert torch.equal(model.forward(batch, nested), model.forward(batch, session))
    thread.join()
    assert torch.equal(seen[0], plain)


def test_selectors_take_numpy_integers_and_refuse_floats_and_bools() -> None:
    import numpy as np

    model = interp.load_model("tiny-llama")
    batch = model.to_tokens(PROMPTS)
    site = "blocks.0.hook_resid_pre"
    reference = model.run(batch, [Zero(site=site, positions=[1], rows=[0])])
    assert torch.equal(model.run(batch, [Zero(site=site, positions=[np.int64(1)], rows=[np.int32(0)])]), reference)
    for bad in ([1.7], [True], [torch.tensor(1.0)]):
        with pytest.raises(interp.InterventionError, match="not an integer|bool"):
            Zero(site=site, positions=bad)
    with pytest.raises(interp.InterventionError, match=r"positions 0\.9 to capture is not an integer"):
        model.run_with_cache(batch, sites=[site], positions=[0.9])
    _, cache = model.run_with_cache(batch, sites=[site], positions=[np.int64(-1)])
    assert cache[site].shape[1] == 1


def test_replace_editing_in_place_changes_only_the_selection() -> None:
    model = interp.load_model("tiny-llama")
    batch = model.to_tokens(PROMPTS)
    site = "blocks.1.hook_resid_pre"
    _, base = model.run_with_cache(batch, sites=[site])
    _, cache = model.run_with_cache(
        batch, sites=[site], interventions=[Replace(site=site, positions=[-1], rows=[0], fn=lambda v, n: v.zero_())]
    )
    got, want = cache[site], base[site].clone()
    want[0, -1] = 0
    assert torch.equal(got, want)
    for fn, pattern in (
        (lambda v, n: None, r"Replace at 'blocks\.1\.hook_resid_pre': function .*<lambda> returned NoneType, not a tensor"),
        (lambda v, n: 3.0, r"returned float, not a tensor"),
        (lambda v, n: v[..., :5], r"returned shape \(3, \d+, 5\), which does not broadcast"),
    ):
        with pytest.raises(interp.InterventionError, match=pattern):
            model.run(batch, [Replace(site=site, fn=fn)])
    assert no_hooks_left(model)


def test_numpy_and_list_tensors_are_converted() -> None:
    model = interp.load_model("tiny-llama", dtype="float64")
    assert model.dtype == torch.float64
    batch = model.to_tokens(PROMPTS)
    site = "blocks.1.hook_resid_pre"
    _, cache = model.run_with_cache(batch, sites=[site])
    source = cache[site] + 1.0
    expected = model.run(batch, [Patch(site=site, source=source, positions=[-1])])
    assert torch.equal(model.run(batch, [Patch(site=site, source=source.numpy(), positions=[-1])]), expected)
    vector = torch.arange(model.dims.d_model, dtype=torch.float64)
    expected = model.run(batch, [Add(site=site, vector=vector)])
    assert torch.equal(model.run(batch, [Add(site=site, vector=vector.tolist())]), expected)


def test_token_ids_and_prompt_lengths_are_checked_against_the_model() -> None:
    model = interp.load_model("tiny-gpt2")
    limit = model.context_length
    assert limit == 128 and model.vocab_size == 512
    model.run(torch.full((1, limit), 511))  # the largest id and the full context are fine
    with pytest.raises(interp.TokenizationError, match=rf"{limit + 1} tokens is longer than the context .*\({limit} tokens"):
        model.run(torch.ones(1, limit + 1, dtype=torch.long))
    with pytest.raises(interp.TokenizationError, match="token id 512 is outside the vocabulary"):
        model.run(torch.tensor([[512]]))
