"""An SAE spliced into the model, and the metrics built on it (FVU, CE recovered, AFA check)."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.errors import InterventionError
from interp.sae import SAE, LatentRecord, ReLUConfig, SAEConfig, TopKConfig, evaluate, reconstruction_metrics, splice
from interp.tokenize import TokenBatch

SITE = "blocks.1.hook_resid_post"
PROMPTS = ["When Mary and John went to the store, John gave a drink to", "Then, Alice and Bob had a long talk at the park"]



@pytest.fixture(scope="module")
def model() -> interp.Model:
    return interp.load_model("tiny-llama", dtype=torch.float64)


def random_sae(d_in: int, k: int = 6) -> SAE:
    sae = SAE.create(SAEConfig(d_in=d_in, d_sae=4 * d_in, activation=TopKConfig(k=k), site=SITE, dtype="float64"), seed=3)
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(0))
    return sae.eval()


def identity_sae(d_in: int) -> SAE:
    """ReLU SAE with W_enc = [I, -I]: x = ReLU(x) - ReLU(-x) is reconstructed exactly."""
    sae = SAE(SAEConfig(d_in=d_in, d_sae=2 * d_in, activation=ReLUConfig(), site=SITE, dtype="float64"))
    eye = torch.eye(d_in, dtype=torch.float64)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae.eval()


def test_error_term_leaves_the_forward_unchanged(model):
    sae = random_sae(model.dims.d_model)
    clean = model.run(PROMPTS)
    assert torch.equal(model.run(PROMPTS, [splice(sae, error_term=True)]), clean)
    assert not torch.equal(model.run(PROMPTS, [splice(sae)]), clean)


def test_reconstruction_splice_replaces_the_site(model):
    sae = random_sae(model.dims.d_model)
    _, cache = model.run_with_cache(PROMPTS, sites=[SITE], interventions=[splice(sae)])
    _, clean = model.run_with_cache(PROMPTS, sites=[SITE])
    assert torch.allclose(cache[SITE], sae(clean[SITE]))


def test_patching_a_latent_changes_only_its_contribution(model):
    sae = random_sae(model.dims.d_model)
    _, clean = model.run_with_cache(PROMPTS, sites=[SITE])
    x = clean[SITE]
    top = int(sae.encode(x).dense().reshape(-1, sae.d_sae).sum(0).argmax())

    def zero_latent(latents: torch.Tensor) -> torch.Tensor:
        return latents.index_fill(-1, torch.tensor([top]), 0.0)

    _, patched = model.run_with_cache(PROMPTS, sites=[SITE], interventions=[splice(sae, error_term=True, edit=zero_latent)])
    expected = x - sae.encode(x).dense()[..., top : top + 1] * sae.W_dec[top]
    assert torch.allclose(patched[SITE], expected, atol=1e-10)


def test_recorded_latents_give_attribution_gradients(model):
    sae = random_sae(model.dims.d_model)
    batch = model.to_tokens(PROMPTS)
    record = LatentRecord()
    with model.hooks([splice(sae, error_term=True, record=record)]) as session:
        logits = model.forward(batch, session)
    metric = logits[:, -1, 5].sum()
    (grad_latents,) = torch.autograd.grad(metric, record.latents)
    _, cache = model.run_with_cache(batch, sites=[SITE], grads=lambda out: out[:, -1, 5].sum())
    assert torch.allclose(grad_latents, cache.grads[SITE] @ sae.W_dec.t(), atol=1e-9)


def test_mask_limits_the_splice(model):
    sae = random_sae(model.dims.d_model)
    batch = model.to_tokens(PROMPTS)
    mask = torch.zeros(batch.shape, dtype=torch.bool)
    mask[:, -1] = True
    _, spliced = model.run_with_cache(batch, sites=[SITE], interventions=[splice(sae, mask=mask)])
    _, clean = model.run_with_cache(batch, sites=[SITE])
    assert torch.equal(spliced[SITE][:, 0], clean[SITE][:, 0])
    assert not torch.equal(spliced[SITE][:, -1], clean[SITE][:, -1])


def test_splice_refuses_to_serialise_and_wrong_sites(model):
    sae = random_sae(model.dims.d_model)
    with pytest.raises(InterventionError, match="save_sae"):
        interp.save_interventions([splice(sae)], "/tmp/never-written")
    with pytest.raises(InterventionError, match="cannot be spliced"):
        model.run(PROMPTS, [splice(sae, site="blocks.0.mlp.hook_post")])


def test_identity_sae_has_fvu_zero_and_full_ce_recovery(model):
    sae = identity_sae(model.dims.d_model)
    ids = model.to_tokens(PROMPTS).input_ids
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[:, 0] = False
    results = evaluate(model, {"identity": sae}, ids, keep, batch_rows=2)
    metrics, density = results["identity"]
    assert metrics.fvu < 1e-12 and metrics.cosine == pytest.approx(1.0)
    assert metrics.ce_sae == pytest.approx(metrics.ce_clean, abs=1e-9)
    assert metrics.ce_recovered == pytest.approx(1.0)
    assert metrics.ce_error == pytest.approx(metrics.ce_clean, abs=1e-12)
    assert metrics.n_tokens == int(keep.sum()) and density.shape == (2 * model.dims.d_model,)


def test_reconstruction_metrics_definitions():
    d = 8
    x = torch.randn(500, d, dtype=torch.float64) * 3 + 1
    mean_only = SAE(SAEConfig(d_in=d, d_sae=16, activation=TopKConfig(k=2), dtype="float64"))
    with torch.no_grad():
        mean_only.b_dec.copy_(x.mean(0))
        mean_only.b_enc.fill_(-1.0)  # nothing fires: the SAE predicts E[x]
    metrics, density = reconstruction_metrics(mean_only, [x[:200], x[200:]])
    assert metrics.fvu == pytest.approx(1.0) and metrics.l0 == 0 and metrics.dead_fraction == 1.0
    assert density.sum() == 0
    sae = identity_sae(d)
    metrics, density = reconstruction_metrics(sae, x)
    assert metrics.fvu < 1e-20 and metrics.afa_norm_gap < 1e-12
    assert metrics.l0 == pytest.approx(float((x != 0).sum(1).double().mean()))
    assert torch.allclose(density[:d] + density[d:], torch.ones(d, dtype=torch.float32))


def test_afa_lower_bound_is_zero_for_orthonormal_decompositions():
    d = 12
    basis = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))[0]
    sae = SAE(SAEConfig(d_in=d, d_sae=d, activation=ReLUConfig(), dtype="float64"))
    with torch.no_grad():
        sae.W_dec.copy_(basis)
        sae.W_enc.copy_(basis.t())
    x = torch.rand(50, d, dtype=torch.float64) @ basis  # non-negative coefficients: exact
    metrics, _ = reconstruction_metrics(sae, x)
    assert metrics.eps_lbo < 1e-12 and metrics.fvu < 1e-20


def test_model_forward_with_token_batch_and_sae_on_float32():
    model = interp.load_model("tiny-llama")
    sae = SAE.create(SAEConfig(d_in=model.dims.d_model, d_sae=128, activation=TopKConfig(k=4), site=SITE))
    batch = TokenBatch.from_ids(torch.randint(0, 400, (2, 10)))
    assert model.run(batch, [splice(sae)]).shape == (2, 10, model.dims.d_vocab)
