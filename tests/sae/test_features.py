"""Feature statistics: the streaming top-k and the interval samples against brute force, histograms,
density, logit effects."""

from __future__ import annotations

import pytest
import torch

from interp.errors import InvalidArgumentError
from interp.runs import RunStore
from interp.sae import SAE, SAEConfig, TopKConfig, feature_stats
from interp.sae.features import HIST_BINS, logit_effects, sample_keys, save_features
from tests.conftest import DEVICE

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
    assert torch.equal(bottom_ids, expected.topk(5, dim=1, largest=False).indices)


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
    stored = run.read_tensors("features-s")
    assert set(ids.flatten().tolist()) & set(vocab["token_id"]) and torch.equal(stored["density"], stats.density)
    assert torch.equal(stored["interval_rows"], stats.interval_rows)
    used = {int(t) for t in stats.interval_tokens.flatten() if t >= 0}
    assert used and used <= set(vocab["token_id"])


def _interval_setup(model, seed: int = 0):
    d = model.dims.d_model
    sae = SAE.create(SAEConfig(d_in=d, d_sae=24, activation=TopKConfig(k=8), site=SITE), seed=3).eval()
    generator = torch.Generator().manual_seed(seed)
    acts = torch.randn(12, 10, d, generator=generator)
    ids = torch.randint(0, 500, (12, 10), generator=generator)
    keep = torch.ones(12, 10, dtype=torch.bool)
    keep[:, 0] = False
    keep[3, 5:] = False
    return sae, acts, ids, keep


def _split(acts, ids, keep, size: int) -> list[tuple]:
    return [(acts[i : i + size], ids[i : i + size], keep[i : i + size]) for i in range(0, acts.shape[0], size)]


INTERVAL_KEYS = ("interval_edges", "interval_counts", "interval_values", "interval_rows", "interval_positions",
                 "interval_tokens", "interval_acts")


def test_interval_examples_match_a_dense_reference(model):
    sae, acts, ids, keep = _interval_setup(model)
    n, per, context = 4, 3, 2
    stats = feature_stats(sae, model, _split(acts, ids, keep, 4), top_k=2, context=context, n_logits=2,
                          intervals=n, per_interval=per, seed=7)
    # every token's activation, encoded batch by batch as the statistics see them (bit-equal values,
    # so a token at an interval's edge, the max included, is on the same side of it)
    dense = torch.cat([sae.encode(a).dense().detach() for a in acts.split(4)]) * keep.unsqueeze(-1)  # (12, 10, 24)
    assert stats.interval_values.shape == (24, n, per) and stats.interval_tokens.shape == (24, n, per, 2 * context + 1)
    full = 0
    for latent in range(24):
        column = dense[..., latent]
        top = float(column.max())
        edges = stats.interval_edges[latent]
        assert torch.allclose(edges, top * torch.linspace(0, 1, n + 1)) and float(edges[-1]) == top  # max of the same floats
        for i in range(n):
            lo, hi = float(edges[i]), float(edges[i + 1])
            inside = ((column > lo) & (column <= hi)).nonzero().tolist()  # every firing token of the interval
            assert int(stats.interval_counts[latent, i]) == len(inside)
            # the reference sample: the interval's candidates with the smallest keys
            keys = [int(sample_keys(7, torch.tensor([r]), torch.tensor([p]), torch.tensor([latent]))) for r, p in inside]
            expected = {tuple(inside[j]) for j in sorted(range(len(inside)), key=keys.__getitem__)[:per]}
            rows, positions = stats.interval_rows[latent, i], stats.interval_positions[latent, i]
            stored = {(int(r), int(p)) for r, p in zip(rows, positions, strict=True) if r >= 0}
            assert stored == expected and len(stored) == min(per, len(inside))
            full += len(inside) >= per
            values = stats.interval_values[latent, i]
            assert values.tolist() == sorted(values.tolist(), reverse=True)  # strongest first, empty slots last
            for slot in range(per):
                row, pos = int(rows[slot]), int(positions[slot])
                if row < 0:
                    assert values[slot] == 0 and (stats.interval_tokens[latent, i, slot] == -1).all()
                    continue
                assert float(values[slot]) == pytest.approx(float(column[row, pos]))
                assert lo < float(values[slot]) <= hi
                for offset in range(-context, context + 1):
                    p = pos + offset
                    token = stats.interval_tokens[latent, i, slot, offset + context]
                    act = stats.interval_acts[latent, i, slot, offset + context]
                    if 0 <= p < 10:
                        assert token == ids[row, p] and act == pytest.approx(float(dense[row, p, latent]))
                    else:
                        assert token == -1 and act == 0
        assert int(stats.interval_counts[latent].sum()) == int((column > 0).sum())
    assert full > 10  # the setup fills many intervals, so "full when enough candidates" is exercised


def test_interval_sample_is_fixed_by_the_seed_and_not_by_the_batching(model):
    sae, acts, ids, keep = _interval_setup(model)
    settings = {"top_k": 2, "context": 1, "n_logits": 2, "intervals": 3, "per_interval": 2}
    first = feature_stats(sae, model, _split(acts, ids, keep, 4), seed=11, **settings).tensors()
    again = feature_stats(sae, model, _split(acts, ids, keep, 5), seed=11, **settings).tensors()
    other = feature_stats(sae, model, _split(acts, ids, keep, 4), seed=12, **settings).tensors()
    for key in ("interval_counts", "interval_rows", "interval_positions", "interval_tokens"):
        assert torch.equal(first[key], again[key]), key
    for key in ("interval_edges", "interval_values", "interval_acts"):  # other batch shapes may round differently
        assert torch.allclose(first[key], again[key], atol=1e-6), key
    assert not torch.equal(first["interval_rows"], other["interval_rows"])
    assert torch.equal(first["interval_counts"], other["interval_counts"])


def test_batches_and_sae_on_the_model_device_give_cpu_statistics(model):
    """On ``INTERP_TEST_DEVICE`` (CUDA in the GPU run): the SAE and every batch tensor on that device,
    the statistics on CPU and equal to those of the CPU run (up to the encoder's rounding)."""
    sae, acts, ids, keep = _interval_setup(model)
    settings = {"top_k": 2, "context": 1, "n_logits": 2, "intervals": 3, "per_interval": 2}
    here = feature_stats(SAE.create(sae.config, seed=3).eval().to(DEVICE), model,
                         _split(acts.to(DEVICE), ids.to(DEVICE), keep.to(DEVICE), 4), **settings).tensors()
    reference = feature_stats(sae, model, _split(acts, ids, keep, 4), **settings).tensors()
    assert {tensor.device.type for tensor in here.values()} == {"cpu"}
    torch.testing.assert_close(here["top_values"], reference["top_values"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(here["density"], reference["density"])
    assert torch.equal(here["interval_counts"].sum(1), reference["interval_counts"].sum(1))


def test_interval_examples_need_batches_that_can_be_read_twice(model):
    sae, acts, ids, keep = _interval_setup(model)
    with pytest.raises(InvalidArgumentError, match="reads the batches twice"):
        feature_stats(sae, model, iter(_split(acts, ids, keep, 4)), top_k=2, context=1, n_logits=2)
    stats = feature_stats(sae, model, iter(_split(acts, ids, keep, 4)), top_k=2, context=1, n_logits=2, intervals=0)
    assert not set(INTERVAL_KEYS) & set(stats.tensors())
    with pytest.raises(InvalidArgumentError, match="per_interval"):
        feature_stats(sae, model, _split(acts, ids, keep, 4), per_interval=0)


def test_sample_keys_are_distinct_and_spread(model):
    row, position = torch.arange(200).repeat_interleave(50), torch.arange(50).repeat(200)
    keys = sample_keys(0, row, position, torch.full_like(row, 5))
    assert keys.unique().numel() == keys.numel() and int(keys.min()) >= 0 and int(keys.max()) < 2**62
    fraction = keys.double() / 2**62  # uniform on [0, 1): each decile holds about a tenth
    counts = torch.histc(fraction, bins=10, min=0, max=1)
    assert ((counts - 1000).abs() < 150).all(), counts.tolist()
