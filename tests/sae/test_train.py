"""Training: recipe invariants, recovery of known sparse features, and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import interp.sae as sae_pkg
from interp.config import validate
from interp.runs import RunStore
from interp.sae import SAE, OptimConfig, SAEConfig, SAETrainer, TopAFAConfig, TopKConfig, TrainConfig
from interp.sae.losses import auxk_loss, sae_loss
from interp.sae.store import ActivationBatch
from interp.sae.trainer import learning_rate



D, N_FEATURES, ACTIVE = 32, 64, 3
TRUTH = torch.nn.functional.normalize(torch.randn(N_FEATURES, D, generator=torch.Generator().manual_seed(0)), dim=1)


def synthetic(index: int, size: int = 1024) -> ActivationBatch:
    """Tokens that are sparse non-negative sums of known unit directions (about 3 per token)."""
    generator = torch.Generator().manual_seed(index)
    mask = torch.bernoulli(torch.full((size, N_FEATURES), ACTIVE / N_FEATURES), generator=generator)
    magnitudes = torch.rand(size, N_FEATURES, generator=generator) + 0.5
    return ActivationBatch(index=index, acts={"s": (mask * magnitudes) @ TRUTH}, grads=None)


def new_trainer(activation, steps: int, d_sae: int = 128) -> SAETrainer:
    sae = SAE.create(SAEConfig(d_in=D, d_sae=d_sae, activation=activation, site="s"), seed=1)
    config = OptimConfig(lr=3e-3, warmup_steps=10, decay_steps=50, dead_after_tokens=20_000)
    return SAETrainer({"sae": sae}, config, steps)


def test_topk_recovers_known_sparse_features():
    trainer = new_trainer(TopKConfig(k=3), steps=250)
    trainer.fit(synthetic(i) for i in range(250))
    directions = torch.nn.functional.normalize(trainer.saes["sae"].W_dec.detach(), dim=1)
    mean_max_cosine = (directions @ TRUTH.t()).max(dim=0).values.mean()
    assert mean_max_cosine > 0.9


def test_decoder_rows_unit_norm_and_gradient_tangent():
    trainer = new_trainer(TopKConfig(k=3), steps=5)
    sae = trainer.saes["sae"]
    trainer.step(synthetic(0))
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-6)
    out = sae_loss(sae, synthetic(1).acts["s"])
    out.loss.backward()
    sae.project_decoder_grad()
    assert (sae.W_dec.grad * sae.W_dec).sum(dim=1).abs().max() < 1e-6


def test_auxk_is_zero_without_dead_latents_and_reaches_dead_ones():
    sae = SAE.create(SAEConfig(d_in=D, d_sae=128, activation=TopKConfig(k=3), site="s"))
    x = synthetic(0).acts["s"]
    none_dead = sae_loss(sae, x, dead=torch.zeros(128, dtype=torch.bool))
    assert none_dead.auxk.item() == 0.0
    dead = torch.zeros(128, dtype=torch.bool)
    dead[:40] = True
    encoded = sae.encode_detailed(x)
    residual = encoded.x_in - sae.decode_normalized(encoded.latents)
    total = (x - x.mean(0)).pow(2).sum()
    aux = auxk_loss(sae, encoded.pre, encoded.x_cent, residual, total, dead, k_aux=16)
    (grad,) = torch.autograd.grad(aux, sae.W_dec)
    assert aux > 0 and grad[40:].abs().max() == 0 and grad[:40].abs().max() > 0


def test_learning_rate_schedule():
    config = OptimConfig(warmup_steps=10, decay_steps=20)
    peak = 2e-4 / (4096 / 2**14) ** 0.5
    assert learning_rate(config, 4096, 0, 100) == pytest.approx(peak / 10)
    assert learning_rate(config, 4096, 50, 100) == pytest.approx(peak)
    assert learning_rate(config, 4096, 99, 100) == pytest.approx(peak / 20)
    assert learning_rate(OptimConfig(lr=1e-3, warmup_steps=0), 4096, 5, 10) == 1e-3


def test_several_saes_train_in_one_pass():
    saes = {
        "topk": SAE.create(SAEConfig(d_in=D, d_sae=64, activation=TopKConfig(k=3), site="s")),
        "afa": SAE.create(SAEConfig(d_in=D, d_sae=64, activation=TopAFAConfig(k_max=16), site="s")),
    }
    trainer = SAETrainer(saes, OptimConfig(lr=1e-3, warmup_steps=0), 4)
    trainer.fit(synthetic(i) for i in range(4))
    assert trainer.step_index == 4
    assert all(len(slot.history) == 4 for slot in trainer.slots.values())
    assert saes["afa"].b_enc.abs().max() == 0  # top-AFA has no encoder bias


def test_resume_equals_uninterrupted(tmp_path: Path):
    steps, kill_at = 12, 5

    def trainer() -> SAETrainer:
        t = new_trainer(TopKConfig(k=3), steps, d_sae=1024)
        t.config = t.config.model_copy(update={"dead_after_tokens": 1000})  # dead = silent for one batch: AuxK runs
        return t

    uninterrupted = trainer()
    uninterrupted.fit(synthetic(i) for i in range(steps))

    run = RunStore(tmp_path / "runs").create("sae", {"test": True}, model="synthetic")
    killed = trainer()
    killed.fit((synthetic(i) for i in range(kill_at)), checkpoint=lambda t: run.write_tensors("checkpoint", t.state_tensors()), checkpoint_every=kill_at)
    del killed
    resumed = trainer()
    resumed.load_state_tensors(RunStore(tmp_path / "runs").get(run.id).read_tensors("checkpoint"))
    assert resumed.step_index == kill_at
    resumed.fit(synthetic(i) for i in range(kill_at, steps))
    a, b = uninterrupted.state_tensors(), resumed.state_tensors()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(s.auxk > 0 for s in resumed.slots["sae"].history)


def tiny_config(tmp_path: Path, **over) -> sae_pkg.TrainConfig:
    text = tmp_path / "corpus.txt"
    text.write_text("\n\n\n".join(f"When Mary and John went to the store, John gave a drink to Mary. Story {i}." for i in range(60)))
    raw = {
        "model": "tiny-llama",
        "device": "cpu",
        "training_tokens": 4000,
        "checkpoint_every": 3,
        "data": {"source": {"kind": "text", "paths": [str(text)]}, "context_size": 24, "eval_rows": 6},
        "store": {"batch_size": 500, "buffer_rows": 16, "model_batch_size": 16, "cache": True, "cache_dir": str(tmp_path / "cache")},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "dead_after_tokens": 1000},
        "features": {"top_k": 3, "context": 2, "n_logits": 4},
        "saes": [
            {"name": "topk", "site": "blocks.1.hook_resid_post", "d_sae": 96, "activation": {"kind": "topk", "k": 4}},
            {"name": "afa", "site": "blocks.0.hook_resid_post", "d_sae": 64, "activation": {"kind": "top_afa", "k_max": 16}},
            {"name": "gsae", "site": "blocks.1.hook_resid_post", "d_sae": 96, "activation": {"kind": "gsae", "k": 4, "beta": 50.0}},
        ],
        **over,
    }
    return validate(raw, TrainConfig)


def test_pipeline_kill_and_resume_matches_uninterrupted(tmp_path: Path):
    config = tiny_config(tmp_path)
    whole = sae_pkg.train(config, RunStore(tmp_path / "runs"), progress=False, log=lambda _: None)
    assert whole.status == "finished"
    partial = sae_pkg.train(config, RunStore(tmp_path / "runs"), progress=False, stop_after=3, log=lambda _: None)
    assert partial.status == "running" and partial.progress.done == 3 and partial.progress.unit == "training steps"
    resumed = sae_pkg.train(config, RunStore(tmp_path / "runs"), resume=partial.id, progress=False, log=lambda _: None)
    assert resumed.status == "finished"
    for name in ("topk", "afa", "gsae"):
        a = sae_pkg.load(whole.path / "saes" / name)
        b = sae_pkg.load(resumed.path / "saes" / name)
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), (name, key)
    assert whole.read_table("train_log").equals(resumed.read_table("train_log"))
    metrics = resumed.read_table("metrics").set_index("sae")
    assert metrics.loc["topk", "l0"] == pytest.approx(4.0)
    assert abs(metrics.loc["topk", "ce_error"] - metrics.loc["topk", "ce_clean"]) < 1e-9
    features = resumed.read_tensors("features-topk")
    assert features["context_tokens"].shape == (96, 3, 5)
    assert set(resumed.manifest["summary"]) >= {"topk", "afa", "gsae"}
    topk, gsae = (sae_pkg.load(whole.path / "saes" / n) for n in ("topk", "gsae"))
    assert not torch.equal(topk.W_dec, gsae.W_dec)  # same init and data: only the gradient-aware selection differs


@pytest.mark.parametrize("activation", [TopKConfig(k=3), TopAFAConfig(k_max=8)], ids=lambda a: a.kind)
def test_bfloat16_autocast_step_keeps_float32_parameters_and_gradients(activation):
    """The mixed-precision path (bfloat16 autocast, float32 master weights), exercised on CPU autocast."""
    sae = SAE.create(SAEConfig(d_in=D, d_sae=64, activation=activation, site="s"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sae_loss(sae, synthetic(0).acts["s"], dead=torch.ones(64, dtype=torch.bool))
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in sae.parameters())
    assert sae.W_enc.grad.abs().sum() > 0
