"""SAE training benchmarks: sparse kernels, throughput against SAELens, top-AFA against TopK.

Three parts (``--part``; all by default), each printing a markdown table for BENCHMARKS.md:

* ``kernels``: forward + backward wall time of the decoder (``values``/``indices`` of shape
  ``(n, k)`` times ``W_dec``) and of the encoder's gradient path, sparse (ours: native
  ``embedding_bag`` decode; gather with an ``embedding_bag`` backward for the encoder) against the
  dense path (scatter into ``(n, d_sae)`` then matmul; autograd through ``gather`` of a dense
  pre-activation), at ``n = 4096``, ``d_in = 576``, ``k = 32``, ``d_sae`` 4,096 and 16,384, with one
  and with two intra-op threads. Random data; medians of 5 runs after a warm-up.
* ``throughput``: training tokens per second and peak memory of one TopK SAE (``d_sae`` 4,096,
  ``k`` 32, batch 4,096, Adam, lr 4e-4, AuxK on) on the *same cached activations* (SmolLM2-135M
  layer-15 ``resid_post`` over the demo corpus, our float16 disk cache, the same
  fixed token permutation, positions >= 2), in our trainer and in SAELens's ``SAETrainer`` with its
  ``TopKTrainingSAE``. SAELens runs in its own virtual environment (it pins transformer-lens < 4),
  so each side is a separate process started by this script: ``--saelens-python`` points at that
  environment's Python. Peak memory is the process's peak RSS minus its RSS once the data is loaded.
* ``afa``: top-AFA against TopK at matched mean L0: train the top-AFA config
  (``data/sae_topafa.yaml``, its ``k_max`` overridable with ``--k-max``), read its held-out mean
  L0, train a TopK SAE with ``k = round(L0)`` on the same data and budget, and compare FVU and CE
  loss recovered on the held-out rows.

Usage::

    python benchmarks/sae_train.py [--part kernels|throughput|afa] [--saelens-python PATH]

The machine is a shared 2-core CPU: other jobs run at the same time, so timings are noisy and the
load average is printed with them. No GPU numbers: no GPU was available to this benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

D_IN, K, BATCH, LR = 576, 32, 4096, 4e-4
CACHE_SITE = "blocks.15.hook_resid_post"


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


# --- part 1: kernels ----------------------------------------------------------------------------


def kernels() -> str:
    from interp.sae.kernels import dense_decode, sparse_decode, sparse_encode

    rows = ["| threads | d_sae | decoder fwd+bwd sparse ms | dense ms | speed-up | encoder fwd+bwd sparse ms | dense ms | speed-up |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for d_sae in (4096, 16384):
            g = torch.Generator().manual_seed(0)
            W_dec = torch.randn(d_sae, D_IN, generator=g).requires_grad_()
            indices = torch.randn(BATCH, d_sae, generator=g).topk(K, dim=1).indices
            values = torch.rand(BATCH, K, generator=g).requires_grad_()
            upstream = torch.randn(BATCH, D_IN, generator=g)
            dec_sparse = _median_ms(lambda: sparse_decode(values, indices, W_dec).backward(upstream))
            dec_dense = _median_ms(lambda: dense_decode(values, indices, W_dec).backward(upstream))
            x = torch.randn(BATCH, D_IN, generator=g)
            W_enc = (torch.randn(D_IN, d_sae, generator=g) / D_IN**0.5).requires_grad_()
            b_enc = torch.zeros(d_sae, requires_grad=True)
            grad_values = torch.randn(BATCH, K, generator=g)

            def enc_sparse() -> None:
                with torch.no_grad():
                    pre = torch.addmm(b_enc, x, W_enc)
                sparse_encode(x, W_enc, b_enc, pre, pre.topk(K, dim=1).indices).backward(grad_values)

            def enc_dense() -> None:
                pre = torch.addmm(b_enc, x, W_enc)
                pre.gather(1, pre.detach().topk(K, dim=1).indices).backward(grad_values)

            e_sparse, e_dense = _median_ms(enc_sparse), _median_ms(enc_dense)
            rows.append(
                f"| {threads} | {d_sae:,} | {dec_sparse:.0f} | {dec_dense:.0f} | {dec_dense / dec_sparse:.1f}x | "
                f"{e_sparse:.0f} | {e_dense:.0f} | {e_dense / e_sparse:.2f}x |"
            )
    return "\n".join(rows)


# --- part 2: throughput, ours vs SAELens (workers run in separate processes) ---------------------


def _cached_tokens(cache_dir: Path) -> np.ndarray:
    """Every position >= 2 of every cached row (no attention sinks), float32, in a fixed random order."""
    meta = json.loads((cache_dir / "meta.json").read_text())
    n_tokens, d = meta["shape"]
    shape = (meta["n_rows"], n_tokens // meta["n_rows"], d)
    acts = np.memmap(cache_dir / "acts.bin", dtype=meta["dtype"], mode="r", shape=shape)
    tokens = np.asarray(acts[:, 2:, :], dtype=np.float32).reshape(-1, d)
    return tokens[np.random.default_rng(0).permutation(len(tokens))]


def _load_tokens(source: Path) -> np.ndarray | torch.Tensor:
    """Training tokens from our activation cache directory, or the float32 tensor ``acts`` of a safetensors file."""
    if source.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(source))["acts"].float()
    return _cached_tokens(source)


def _batches(tokens: np.ndarray | torch.Tensor, steps: int):
    if len(tokens) <= BATCH:
        raise SystemExit(f"{len(tokens)} tokens: need more than one batch of {BATCH}")
    for step in range(steps):
        start = (step * BATCH) % (len(tokens) - BATCH)
        yield torch.as_tensor(tokens[start : start + BATCH])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_rate(kind: str, tokens: np.ndarray | torch.Tensor, steps: int, d_sae: int, device: str = "cpu", warmup: int = 0) -> dict:
    """Train one TopK SAE (k ``K``, batch ``BATCH``, lr ``LR``) on ``warmup + steps`` batches of ``tokens``.

    ``kind`` is ``"ours"`` or ``"saelens"`` (its ``SAETrainer`` with ``TopKTrainingSAE``). Both read
    the same batches in the same order, on ``device``; on CUDA both train under bfloat16 autocast
    with float32 weights. Tokens/s counts the ``steps`` batches after the ``warmup`` ones. Returns
    tokens/s, seconds, ``final_fvu`` (ours: the last step's training FVU; SAELens: the first batch
    after training) and ``fvu_first_batch`` (both: the first batch after training, float32).
    """
    d_in, total = tokens.shape[1], warmup + steps
    if device != "cpu" and isinstance(tokens, torch.Tensor):
        tokens = tokens.to(device)
    marks = [0.0]

    def timed(batches):
        for i, x in enumerate(batches):
            if warmup and i == warmup:
                _sync(device)
                marks[0] = time.perf_counter()
            yield x

    if kind == "ours":
        from interp.sae import SAE, OptimConfig, SAEConfig, SAETrainer, TopKConfig
        from interp.sae.store import ActivationBatch

        sae = SAE.create(SAEConfig(d_in=d_in, d_sae=d_sae, activation=TopKConfig(k=K), site="s"))
        trainer = SAETrainer({"s": sae}, OptimConfig(lr=LR, warmup_steps=0, dead_after_tokens=BATCH * 5), total, device)
        marks[0] = time.perf_counter()
        trainer.fit(ActivationBatch(index=i, acts={"s": x}, grads=None) for i, x in enumerate(timed(_batches(tokens, total))))
        _sync(device)
        seconds = time.perf_counter() - marks[0]
        sae, fvu = trainer.slots["s"].sae, trainer.slots["s"].history[-1].fvu
    else:
        from sae_lens import TopKTrainingSAEConfig
        from sae_lens.config import SAETrainerConfig
        from sae_lens.saes.topk_sae import TopKTrainingSAE
        from sae_lens.training.sae_trainer import SAETrainer as LensTrainer

        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=K, device=device))
        config = SAETrainerConfig(
            total_training_samples=total * BATCH, train_batch_size_samples=BATCH, lr=LR, lr_end=LR, device=device,
            autocast=device.startswith("cuda"), dead_feature_window=5, feature_sampling_window=10**6,
            n_batches_for_norm_estimate=1,
        )
        trainer = LensTrainer(config, sae, data_provider=timed(_batches(tokens, total)))
        marks[0] = time.perf_counter()
        trainer.fit()
        _sync(device)
        seconds = time.perf_counter() - marks[0]
        fvu = None
    with torch.no_grad():
        x = next(_batches(tokens, 1)).to(device)
        first = float((sae(x).float() - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    return {"tokens_per_second": steps * BATCH / seconds, "seconds": seconds,
            "final_fvu": first if fvu is None else fvu, "fvu_first_batch": first}


def worker(kind: str, source: Path, steps: int, d_sae: int, threads: int, device: str = "cpu", warmup: int = 0) -> dict:
    torch.set_num_threads(threads)
    tokens = _load_tokens(source)
    base = _rss_mb()
    result = train_rate(kind, tokens, steps, d_sae, device, warmup)
    if kind == "saelens":
        import sae_lens

        result["version"] = sae_lens.__version__
    return {
        "kind": kind,
        "steps": steps,
        "tokens_per_second": result["tokens_per_second"],
        "seconds": result["seconds"],
        "peak_rss_delta_mb": _peak_mb() - base,
        "final_fvu": result["final_fvu"],
        "fvu_first_batch": result["fvu_first_batch"],
        "threads": threads,
        "device": device,
        "warmup": warmup,
        **({"version": result["version"]} if "version" in result else {}),
    }


def _default_cache() -> Path:
    from interp.models import load_model
    from interp.sae.store import ActivationStore
    from interp.sae.tokens import DemoSource, load_tokens

    model = load_model("smollm2-135m")
    tokens = load_tokens(DemoSource(), model.tokenizer, 128)
    store = ActivationStore(model, [CACHE_SITE], tokens, cache=True)
    return store.caches[CACHE_SITE].directory


def throughput(saelens_python: str, steps: int, threads: int) -> str:
    cache = _default_cache()
    rows = ["| trainer | threads | steps × tokens | tokens/s | peak RSS Δ MB | FVU after |", "|---|---:|---:|---:|---:|---:|"]
    results = []
    for kind, python in (("ours", sys.executable), ("saelens", saelens_python)):
        command = [python, __file__, "--worker", kind, "--cache", str(cache), "--steps", str(steps), "--threads", str(threads)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1]) if kind == "ours" else ""}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            rows.append(f"| {kind} | {threads} | failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode} | | | |")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        rows.append(
            f"| {'interp' if kind == 'ours' else 'SAELens 6.54.12 SAETrainer'} | {threads} | {steps} × {BATCH} | "
            f"{result['tokens_per_second']:,.0f} | {result['peak_rss_delta_mb']:.0f} | {result['final_fvu']:.3f} |"
        )
    if len(results) == 2:
        rows.append(f"\nratio interp / SAELens tokens/s: {results[0]['tokens_per_second'] / results[1]['tokens_per_second']:.2f}x")
    return "\n".join(rows)


# --- part 3: top-AFA vs TopK at matched L0 -------------------------------------------------------


def afa_vs_topk(runs_root: Path, training_tokens: int | None, k_max: int | None) -> str:
    from interp.config import load_config
    from interp.runs import RunStore
    from interp.sae import TrainConfig, train

    data = Path(__file__).resolve().parents[1] / "data"
    raw = load_config(data / "sae_topafa.yaml", TrainConfig).to_json()
    if training_tokens is not None:
        raw["training_tokens"] = training_tokens
    if k_max is not None:
        raw["saes"][0]["activation"]["k_max"] = k_max
        raw["saes"][0]["name"] = f"topafa-kmax{k_max}"
    afa_config = load_config_dict(raw)
    afa_run = train(afa_config, RunStore(runs_root), progress=False)
    afa = afa_run.read_table("metrics").iloc[0]
    k = max(1, round(float(afa["l0"])))
    raw["saes"][0].update(name=f"topk-k{k}", activation={"kind": "topk", "k": k})
    topk_run = train(load_config_dict(raw), RunStore(runs_root), progress=False)
    topk = topk_run.read_table("metrics").iloc[0]
    rows = [
        "| SAE | mean L0 (p5/p50/p95) | FVU | CE recovered | CE clean / SAE / zero-abl. | dead | AFA norm gap | eps_LBO | train tok/s | run |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for row, run in ((afa, afa_run), (topk, topk_run)):
        rows.append(
            f"| {row['sae']} | {row['l0']:.1f} ({row['l0_p5']:.0f}/{row['l0_p50']:.0f}/{row['l0_p95']:.0f}) | {row['fvu']:.3f} | "
            f"{row['ce_recovered']:.3f} | {row['ce_clean']:.3f} / {row['ce_sae']:.3f} / {row['ce_zero']:.3f} | "
            f"{row['dead_fraction']:.3f} | {row['afa_norm_gap']:.3f} | {row['eps_lbo']:.2e} | "
            f"{run.manifest['summary']['train_tokens_per_second']:,.0f} | {run.id} |"
        )
    return "\n".join(rows)


def load_config_dict(raw: dict):
    from interp.config import validate
    from interp.sae import TrainConfig

    return validate(raw, TrainConfig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["kernels", "throughput", "afa"], action="append")
    parser.add_argument("--saelens-python", default="/tmp/saelens-venv/bin/python")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs-root", type=Path, default=Path("/tmp/interp-sae-bench-runs"))
    parser.add_argument("--training-tokens", type=int, default=None, help="override the top-AFA/TopK budget")
    parser.add_argument("--k-max", type=int, default=None, help="override the top-AFA config's k_max")
    parser.add_argument("--worker", choices=["ours", "saelens"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)  # a cache directory or a .safetensors file
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--d-sae", type=int, default=4096)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.cache, args.steps, args.d_sae, args.threads, args.device, args.warmup)))
        return
    print(f"load average at start: {os.getloadavg()}; torch {torch.__version__}; {os.cpu_count()} logical cores")
    for part in args.part or ["kernels", "throughput", "afa"]:
        start = time.perf_counter()
        if part == "kernels":
            table = kernels()
        elif part == "throughput":
            table = throughput(args.saelens_python, args.steps, args.threads)
        else:
            table = afa_vs_topk(args.runs_root, args.training_tokens, args.k_max)
        print(f"\n### {part} ({time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f})\n\n{table}\n", flush=True)


if __name__ == "__main__":
    main()
