"""Feature statistics: the streaming top-k against brute force, histograms, density, logit effects."""

from __future__ import annotations

import pytest
import torch

from interp.runs import RunStore
from interp.sae import SAE, SAEConfig, TopKConfig, feature_stats
from interp.sae.features import HIST_BINS, logit_effects, save_features

SITE = "blocks.1.hook_resid_post"




def test_streaming_top_k_matches_brute_force(model):
    d = model.dims.d_model
    sae = SAE.create(SAEConfig(d_in=d, d_sae=40, activation=TopKConfig(k=5), site=SITE), seed=2).eval()
    generator = torch.Generator().manual_seed(0)
    acts = torch.randn(12, 10, d, generator=generator)
    ids = torch.randint(0, 500, (12, 10), generator=generator)
    keep = torch.ones(12, 10, dtype=torch.bool)
    keep[:, 0] = False
    batches = [(acts[i : i + 4], ids[i : i + 4], keep[i : i + 4]) for i in range(0, 12, 4)]
    stats = feature_stats(sae, model, batches, top_k=3, context=2, n_logits=4)
    dense = sae.encode(acts).dense().detach() * keep.unsqueeze(-1)  # (12, 10, 40)
    flat = dense.reshape(-1, 40)
    for latent in range(40):
        values, where = flat[:, latent].topk(3)
        fired = values > 0
        assert torch.allclose(stats.top_values[latent][fired], values[fired])
        for slot in range(3):
            if not fired[slot]:
                assert stats.top_rows[latent, slot] == -1
                continue
            row, pos = divmod(int(where[slot]), 10)
            assert (stats.top_rows[latent, slot], stats.top_positions[latent, slot]) == (row, pos)
            for offset in range(-2, 3):
                p = pos + offset
                token = stats.context_tokens[latent, slot, offset + 2]
                act = stats.context_acts[latent, slot, offset + 2]
                if 0 <= p < 10:
                    assert token == ids[row, p] and act == pytest.approx(float(dense[row, p, latent]))
                else:
                    assert token == -1 and act == 0
    assert torch.allclose(stats.density, (flat > 0).float().sum(0) / keep.sum())
    assert stats.hist_counts.sum(1).tolist() == (flat > 0).sum(0).tolist()
    assert stats.hist_counts.shape == (40, HIST_BINS) and stats.hist_edges.shape == (HIST_BINS + 1,)


def test_logit_effects_apply_the_final_norm_weight(model):
    d = model.dims.d_model
    sae = SAE.create(SAEConfig(d_in=d, d_sae=8, activation=TopKConfig(k=2), site=SITE), seed=1)
    norm = model.arch.final_norm()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, d))
    top_ids, top_values, bottom_ids, bottom_values = logit_effects(sae, model, n_logits=5)
    expected = (sae.W_dec.detach() * norm.weight.detach()) @ model.hf.get_output_embeddings().weight.detach().t()
    assert torch.allclose(top_values, expected.topk(5, dim=1).values, atol=1e-5)
    assert torch.equal(top_ids, expected.topk(5, dim=1).indices)
    assert torch.allclose(bottom_values, expected.topk(5, dim=1, largest=False).values, atol=1e-5)


def test_features_are_stored_in_the_run(model, tmp_path):
    d = model.dims.d_model
    sae = SAE.create(SAEConfig(d_in=d, d_sae=16, activation=TopKConfig(k=3), site=SITE)).eval()
    ids = torch.randint(0, 500, (4, 8))
    _, cache = model.run_with_cache(ids, sites=[SITE])
    stats = feature_stats(sae, model, [(cache[SITE], ids, torch.ones(4, 8, dtype=torch.bool))], top_k=2, context=1, n_logits=3)
    run = RunStore(tmp_path).create("sae", {"x": 1}, model="tiny-llama")
    save_features(run, "s", stats, model.tokenizer)
    table = run.read_table("features-s")
    assert len(table) == 16 and {"density", "top_logits", "max_activation"} <= set(table.columns)
    assert len(table.loc[0, "top_logits"]) == 3
    vocab = run.read_table("vocab-s")
    assert set(ids.flatten().tolist()) & set(vocab["token_id"]) and torch.equal(run.read_tensors("features-s")["density"], stats.density)
