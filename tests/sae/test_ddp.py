"""Data-parallel SAE training: two gloo processes equal one process on the same global batches.

Tolerance: each global batch's gradient is the same sum split over two processes, so the replicas
take the single-process step up to the order of float32 additions (the loss normalisers and the
gradient average are sums over processes). After six steps the largest parameter difference
measured is 6e-8 on entries of size 0.35 (a few float32 ulps); the tests allow 1e-6 absolute plus
1e-5 relative, a hundred times less than one step's change (lr 1e-3) and a margin for Adam dividing
near-zero second moments, while any real mistake (one process's gradient, a slice normalised by its
own variance, an unsynchronised dead-latent counter) moves parameters by 1e-4 or more.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from interp.config import load_config
from interp.runs import RunStore
from interp.runs.formats import read_tensors, write_tensors
from interp.sae import SAE, OptimConfig, SAEConfig, SAETrainer, TopAFAConfig, TopKConfig, TrainConfig, load
from interp.sae.pipeline import train
from interp.sae.store import ActivationBatch

D, STEPS, BATCH = 32, 6, 512
TRUTH = torch.nn.functional.normalize(torch.randn(64, D, generator=torch.Generator().manual_seed(0)), dim=1)
OPTIM = OptimConfig(lr=1e-3, warmup_steps=0, dead_after_tokens=1024)  # AuxK on from the third step


def batch(index: int, rank: int = 0, world: int = 1) -> ActivationBatch:
    """Global batch ``index`` (sparse sums of known directions), or process ``rank``'s equal part of it."""
    generator = torch.Generator().manual_seed(index)
    mask = torch.bernoulli(torch.full((BATCH, 64), 3 / 64), generator=generator)
    acts = (mask * (torch.rand(BATCH, 64, generator=generator) + 0.5)) @ TRUTH
    part = BATCH // world
    return ActivationBatch(index=index, acts={"s": acts[rank * part : (rank + 1) * part]}, grads=None)


def trainer(distributed: bool = False) -> SAETrainer:
    saes = {
        "topk": SAE.create(SAEConfig(d_in=D, d_sae=128, activation=TopKConfig(k=3), site="s"), seed=1),
        "afa": SAE.create(SAEConfig(d_in=D, d_sae=128, activation=TopAFAConfig(), site="s"), seed=2),
    }
    return SAETrainer(saes, OPTIM, STEPS, distributed=distributed)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        t = trainer(distributed=True)
        t.fit(batch(i, rank, world) for i in range(STEPS))
        history = torch.tensor([[s.loss, s.fvu, s.l0] for s in t.slots["topk"].history], dtype=torch.float64)
        write_tensors(Path(out) / f"rank{rank}.safetensors", {**t.state_tensors(), "history": history})
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process(tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch) -> None:
    single = trainer()
    single.fit(batch(i) for i in range(STEPS))
    # spawned processes re-run the parent's __main__ by path; under pytest that may be a script an
    # earlier test executed (the app's Home.py), so they start from a blank __main__ instead
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [read_tensors(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    for key, value in single.state_tensors().items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # the replicas agree exactly
        if value.is_floating_point():
            torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6, msg=key)
        else:
            assert torch.equal(ranks[0][key], value), key  # steps, counters of silent latents
    expected = torch.tensor([[s.loss, s.fvu, s.l0] for s in single.slots["topk"].history], dtype=torch.float64)
    torch.testing.assert_close(ranks[0]["history"], expected, rtol=1e-5, atol=1e-6)
    assert single.slots["topk"].history[-1].fvu < single.slots["topk"].history[0].fvu  # it learned something


def test_distributed_needs_a_process_group() -> None:
    with pytest.raises(ValueError, match="launch with torchrun"):
        trainer(distributed=True)



def test_torchrun_training_resumes_in_one_process_to_the_same_saes(tmp_path: Path) -> None:
    """``torchrun --nproc-per-node 2 -m interp sae train`` for two steps, then one process for the rest.

    On a real model's activations Adam's division by near-zero second moments shows the reduction
    order more: one decoder entry of 4,096 differed by 2e-6 (on 0.02), so this end-to-end check allows
    1e-5 absolute and 1e-4 relative, still ten times below one step's change.
    """
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n\n".join(f"Alice and Bob went to the garden, and Bob gave a ring to Alice, time {i}." for i in range(40)))
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: tiny-llama\ndevice: cpu\ntraining_tokens: 2000\ncheckpoint_every: 1\n"
        f"data: {{source: {{kind: text, paths: ['{corpus}']}}, context_size: 24, eval_rows: 4}}\n"
        f"store: {{batch_size: 500, buffer_rows: 16, cache: true, cache_dir: '{tmp_path / 'cache'}'}}\n"
        "optim: {lr: 0.001, warmup_steps: 0}\nfeatures: {enabled: false}\n"
        "saes: [{name: s, site: blocks.1.hook_resid_post, d_sae: 64, activation: {kind: topk, k: 4}}]\n"
    )
    parsed = load_config(config, TrainConfig)
    single = train(parsed, RunStore(tmp_path / "single"), progress=False, log=lambda m: None)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
               "-m", "interp", "sae", "train", str(config), "--runs", str(tmp_path / "ddp"), "--no-progress", "--stop-after", "2"]
    done = subprocess.run(command, env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.count("stopped at step 2/4") == 1  # only rank 0 speaks
    (info,) = RunStore(tmp_path / "ddp").list()
    assert int(RunStore(tmp_path / "ddp").get(info.id).read_tensors("checkpoint")["step"]) == 2
    resumed = train(parsed, RunStore(tmp_path / "ddp"), resume=info.id, progress=False, log=lambda m: None)
    assert resumed.status == "finished"
    ours, theirs = (load(r.path / "saes" / "s") for r in (resumed, single))
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
