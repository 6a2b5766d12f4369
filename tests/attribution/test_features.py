"""Attribution over SAE latents and error nodes, exact latent patching, and faithfulness curves.

References are written with the plain hook layer (``Patch`` of a site value computed by hand from
the SAE), independently of :mod:`interp.attribution.features`.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp import Patch
from interp.attribution import RelPRules
from interp.attribution.features import (
    FeatureNodes,
    FeatureRecord,
    FeatureSplice,
    exact_feature_effects,
    feature_attribution,
)
from interp.attribution.faithfulness import default_sizes, faithfulness_curves
from interp.sae import SAE, SAEConfig, TopKConfig
from interp.tasks import get_metric, ioi_task

from tests.conftest import DEVICE, no_hooks_left

SITES = ("blocks.0.hook_resid_post", "blocks.1.hook_mlp_out")


@pytest.fixture(scope="module")
def setup():
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=2)
    saes = [SAE.create(SAEConfig(d_in=model.dims.d_model, d_sae=24, activation=TopKConfig(k=6), site=site,
                                 dtype="float64"), seed=i) for i, site in enumerate(SITES)]
    return model, task, saes


def _latents(sae: SAE, x: torch.Tensor) -> torch.Tensor:
    return sae.encode(x).dense().reshape(*x.shape[:-1], sae.d_sae)


def _decode(sae: SAE, f: torch.Tensor) -> torch.Tensor:
    return f @ sae.W_dec + sae.b_dec


def _acts(model, tokens, site):
    _, cache = model.run_with_cache(tokens, sites=[site])
    return cache[site]


def test_splice_leaves_the_forward_unchanged_and_splits_exactly(setup) -> None:
    model, task, saes = setup
    plain = model.run(task.clean)
    records = [FeatureRecord() for _ in saes]
    spliced = model.run(task.clean, [FeatureSplice(site=s.site, sae=s, record=r) for s, r in zip(saes, records)])
    assert torch.equal(plain, spliced)
    for sae, record in zip(saes, records):
        x = _acts(model, task.clean, sae.site)
        torch.testing.assert_close(_decode(sae, record.latents) + record.error, x, rtol=1e-12, atol=1e-12)
    assert no_hooks_left(model)


def _hand_atp(model, task, sae, direction="noising"):
    """(f_src - f_base) . dm/df and (e_src - e_base) . dm/de, with the site patched to decode(f) + e."""
    metric = get_metric("logit_diff")
    base_tokens, source_tokens = (task.clean, task.corrupt) if direction == "noising" else (task.corrupt, task.clean)
    x_base, x_src = _acts(model, base_tokens, sae.site), _acts(model, source_tokens, sae.site)
    f_base, f_src = _latents(sae, x_base), _latents(sae, x_src)
    e_base, e_src = x_base - _decode(sae, f_base), x_src - _decode(sae, f_src)
    f = f_base.clone().requires_grad_(True)
    e = e_base.clone().requires_grad_(True)
    with torch.enable_grad(), model.hooks([Patch(site=sae.site, source=_decode(sae, f) + e)]) as session:
        logits = model.forward(model.as_batch(base_tokens), session)
        value = metric(logits[:, -1], task).sum()
    grad_f, grad_e = torch.autograd.grad(value, [f, e])
    latents = ((f_src - f_base) * grad_f).sum(dim=1)
    error = ((e_src - e_base) * grad_e).sum(dim=(1, 2))
    return torch.cat([latents, error[:, None]], dim=1)


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_atp_on_latents_is_gradient_times_delta(setup, direction: str) -> None:
    model, task, saes = setup
    result = feature_attribution(model, task, saes, "atp", direction=direction)
    nodes = FeatureNodes.of(saes)
    assert result.effects.shape == (3, len(nodes)) == (3, 2 * 25)
    for index, sae in enumerate(saes):
        offset = nodes.offsets[index]
        hand = _hand_atp(model, task, sae, direction)
        torch.testing.assert_close(result.effects[:, offset: offset + 25], hand, rtol=1e-9, atol=1e-10)
    assert result.effects.abs().max() > 1e-4
    assert result.passes == 1 + 1 + 1 + 2
    none = feature_attribution(model, task, saes, "relp", direction=direction, rules=RelPRules.none())
    torch.testing.assert_close(none.effects, result.effects, rtol=1e-10, atol=1e-12)
    relp = feature_attribution(model, task, saes, "relp", direction=direction)
    assert not torch.allclose(relp.effects, result.effects)


def _naive_effect(model, task, sae, latent, target_f, target_e, base_tokens):
    metric = get_metric("logit_diff")
    x = _acts(model, base_tokens, sae.site)
    f = _latents(sae, x)
    new_f, new_e = f.clone(), x - _decode(sae, f)
    if latent is None:
        new_e = target_e.expand_as(new_e)
    else:
        new_f[..., latent] = target_f.expand_as(f)[..., latent]
    patched = model.run(base_tokens, [Patch(site=sae.site, source=x + (_decode(sae, new_f) - _decode(sae, f))
                                            + (new_e - (x - _decode(sae, f))))])
    return metric(patched[:, -1], task) - metric(model.run(base_tokens)[:, -1], task)


@pytest.mark.parametrize("replacement", ["patch", "mean"])
def test_exact_latent_patching_equals_a_naive_loop(setup, replacement: str) -> None:
    model, task, saes = setup
    nodes = FeatureNodes.of(saes)
    estimate = feature_attribution(model, task, saes, "atp", replacement=replacement)
    chosen = estimate.ranking().argsort(descending=True)[:6].tolist() + [nodes.offsets[1] + 24, 24]
    exact = exact_feature_effects(model, task, saes, chosen, replacement=replacement, max_rows=7)
    for node in chosen:
        index, latent = nodes.locate(node)
        sae = saes[index]
        if replacement == "patch":
            x_src = _acts(model, task.corrupt, sae.site)
            f_t = _latents(sae, x_src)
            e_t = x_src - _decode(sae, f_t)
        else:
            xs = torch.cat([_acts(model, task.clean, sae.site), _acts(model, task.corrupt, sae.site)])
            f_all = _latents(sae, xs)
            f_t, e_t = f_all.mean(0, keepdim=True), (xs - _decode(sae, f_all)).mean(0, keepdim=True)
        naive = _naive_effect(model, task, sae, latent, f_t, e_t, task.clean)
        torch.testing.assert_close(exact.effects[:, node], naive.double(), rtol=1e-9, atol=1e-10, msg=str(node))
    others = [n for n in range(len(nodes)) if n not in chosen]
    assert torch.isnan(exact.effects[:, others]).all()


def test_ig_is_complete_over_one_sae(setup) -> None:
    model, task, saes = setup
    metric = get_metric("logit_diff")
    sae = saes[1]
    ig = feature_attribution(model, task, [sae], "ig", steps=40)
    whole = model.run(task.clean, [Patch(site=sae.site, source=_acts(model, task.corrupt, sae.site))])
    exact = metric(whole[:, -1], task) - metric(model.run(task.clean)[:, -1], task)
    torch.testing.assert_close(ig.effects.sum(dim=1), exact.double(), rtol=2e-3, atol=2e-4)
    assert ig.passes == 2 + 40 * 3
    one_left = feature_attribution(model, task, [sae], "ig", steps=1, rule="left")
    atp = feature_attribution(model, task, [sae], "atp")
    torch.testing.assert_close(one_left.effects, atp.effects, rtol=1e-9, atol=1e-11)


def test_faithfulness_ends_at_one_and_starts_at_the_all_ablated_metric(setup) -> None:
    model, task, saes = setup
    metric = get_metric("logit_diff")
    nodes = FeatureNodes.of(saes)
    scores = feature_attribution(model, task, saes, "atp").ranking()
    curves = faithfulness_curves(model, task, saes, {"atp": scores, "random": torch.rand(len(nodes))}, sizes=[0, 5, 50])
    table = curves.table
    clean = float(metric(model.run(task.clean)[:, -1], task).double().mean())
    assert curves.full == pytest.approx(clean, abs=1e-10)
    # every node ablated: each site becomes the constant decode(mean f) + mean e, downstream of nothing
    patches = []
    for sae in saes:
        xs = torch.cat([_acts(model, task.clean, sae.site), _acts(model, task.corrupt, sae.site)])
        f = _latents(sae, xs)
        patches.append(Patch(site=sae.site, source=(_decode(sae, f.mean(0, keepdim=True))
                                                    + (xs - _decode(sae, f)).mean(0, keepdim=True)).expand_as(xs[:3])))
    empty = float(metric(model.run(task.clean, patches)[:, -1], task).double().mean())
    assert curves.empty == pytest.approx(empty, abs=1e-9)
    for method in ("atp", "random"):
        rows = table[table.method == method].set_index("nodes")
        assert rows.loc[50, "faithfulness"] == pytest.approx(1.0, abs=1e-9)
        assert rows.loc[0, "faithfulness"] == pytest.approx(0.0, abs=1e-9)
        assert rows.loc[0, "metric"] == pytest.approx(empty, abs=1e-9)
        assert rows.loc[50, "complement"] == pytest.approx(0.0, abs=1e-9)
        assert rows.loc[0, "complement"] == pytest.approx(1.0, abs=1e-9)
    assert default_sizes(50) == [0, 1, 2, 5, 10, 20, 50]
    assert no_hooks_left(model)


def test_cli_runs_a_feature_circuit_config(tmp_path) -> None:
    import typer
    from typer.testing import CliRunner

    from interp.attribution.cli import attribute
    from interp.runs import FINISHED, RunStore
    from interp.sae import save_sae

    dirs = []
    for i, site in enumerate(SITES):
        sae = SAE.create(SAEConfig(d_in=64, d_sae=16, activation=TopKConfig(k=4), site=site), seed=i)
        dirs.append(str(save_sae(sae, tmp_path / f"sae{i}")))
    config = tmp_path / "circuit.yaml"
    config.write_text(
        "kind: feature_circuit\nmodel: tiny-llama\ntask: {kind: ioi, n: 3, seed: 1}\n"
        f"saes: [{dirs[0]}, {dirs[1]}]\nmethods: [atp, relp, ig]\nexact_top: 5\nsizes: [0, 3, 34]\nig: {{steps: 2}}\ndevice: {DEVICE}\n"
    )
    app = typer.Typer()
    app.command()(attribute)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["attribute", str(config), "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "feature-circuit faithfulness" in result.output
    store = RunStore(tmp_path / "runs")
    runs = store.list(kind="feature_circuit")
    assert len(runs) == 1 and runs[0].status == FINISHED
    run = store.get(runs[0].id)
    nodes, curves = run.read_table("nodes"), run.read_table("faithfulness")
    assert len(nodes) == 34 and set(nodes.columns) >= {"atp", "relp", "ig", "exact", "kind"}
    assert 5 <= nodes["exact"].notna().sum() <= 15
    full = curves[curves.nodes == 34]["faithfulness"]
    assert full.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert set(run.read_table("costs")["method"]) == {"atp", "relp", "ig", "exact"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: feature_circuit\nsaes: [x]\nmethods: [atp*]\n")
    refused = CliRunner().invoke(app, ["attribute", str(bad), "--runs", str(tmp_path / "runs")])
    assert refused.exit_code == 2 and "feature circuits support" in " ".join(refused.output.split())


def test_nodes_only_where_asked(setup) -> None:
    from interp.attribution.features import node_positions

    model, task, saes = setup
    width = task.clean.shape[1]
    assert not node_positions(task, "clean", width).any()
    where = node_positions(task, "clean", 2)
    real = task.clean.attention_mask.bool()
    assert (where.sum(dim=1) == real.sum(dim=1) - 2).all() and not (where & ~real).any()
    silent = feature_attribution(model, task, saes, "atp", skip_first=width)
    assert silent.effects.abs().max() == 0
    exact = exact_feature_effects(model, task, saes, [0, 24], skip_first=width)
    assert exact.effects[:, [0, 24]].abs().max() < 1e-12  # batched rows: rounding only
    # clean and corrupt prompts share their first tokens, so only mean ablation sees the skipped ones
    some = feature_attribution(model, task, saes, "atp", replacement="mean", skip_first=2)
    every = feature_attribution(model, task, saes, "atp", replacement="mean")
    assert some.effects.abs().max() > 0 and not torch.allclose(some.effects, every.effects)


def test_results_come_back_on_cpu_from_a_model_on_any_device(setup) -> None:
    """On ``INTERP_TEST_DEVICE`` (CUDA in the GPU run): effects are CPU tensors equal to the CPU model's,
    and a ranking made from them drives the faithfulness curves (CPU masks indexed by it)."""
    cpu_model, task, cpu_saes = setup
    model = interp.load_model("tiny-llama", dtype=torch.float64, device=DEVICE)
    saes = [SAE.create(sae.config, seed=i).to(DEVICE) for i, sae in enumerate(cpu_saes)]
    for method in ("atp", "ig"):
        here = feature_attribution(model, task, saes, method, steps=2)
        reference = feature_attribution(cpu_model, task, cpu_saes, method, steps=2)
        assert here.effects.device.type == "cpu" and here.base_metric.device.type == "cpu"
        torch.testing.assert_close(here.effects, reference.effects, rtol=1e-7, atol=1e-9)
    exact = exact_feature_effects(model, task, saes, [0, 24])
    assert exact.effects.device.type == "cpu" and exact.base_metric.device.type == "cpu"
    ranking = here.ranking()
    curves = faithfulness_curves(model, task, saes, {"ig": ranking, "on device": ranking.to(DEVICE)}, sizes=[0, 7, 50])
    table = curves.table.set_index(["method", "nodes"])
    assert table.loc[("ig", 50), "faithfulness"] == pytest.approx(1.0, abs=1e-9)
    assert table.loc["ig"].equals(table.loc["on device"])
    assert no_hooks_left(model)
