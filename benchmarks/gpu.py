"""The GPU measurements, side by side in one run: patching sweeps, AtP, SAE training, steered generation, TCAV, the test suite.

One prepared script for a machine with a GPU (planned to finish in under 10 minutes on one H200);
``--device cpu --quick`` runs every part small on a CPU, to know it works before a GPU is lent.

Parts (``--parts``, all but ``corpus`` by default; each writes a Markdown table into ``--out``,
default ``$OUT`` or ``./gpu_out``; one part failing leaves the others' tables):

1. ``patching.md``: ``resid_pre`` by (layer, position) and ``head_z`` by (layer, head) on 32 IOI
   pairs, SmolLM2-135M-Instruct: ours (:func:`interp.patching.patch_sweep`, rows per forward sized
   from the GPU's free memory, not a CPU budget), TransformerLens's patching helper and a
   one-forward-per-cell loop (both on an evenly spread subset of cells, time scaled to the sweep);
2. ``atp.md``: attribution patching on the same sweeps, ours (:func:`interp.attribution.atp`) vs the
   same two forwards and one backward written with TransformerLens hooks, with the correlation of
   the two estimates;
3. ``sae.md``: SAE training tokens/s on the same cached activations (middle-layer ``resid_post``,
   TopK k=32, width 16x, batches of 4,096 tokens, one warm-up step, bf16 autocast with float32
   master weights on CUDA): ours against SAELens's ``SAETrainer`` + ``TopKTrainingSAE``, which runs in
   a child process from ``--saelens-path DIR`` (a site directory holding sae-lens and
   transformer-lens < 4, which cannot share this environment), with the ratio and each SAE's FVU;
4. ``steering.md``: greedy generation tokens/s (24 new tokens), one prompt and 32 prompts at once:
   our ``generate`` plain and under one and three vectors (mean difference of the sentiment pairs),
   Hugging Face ``generate`` plain, under a steering-vectors hook and under repeng's ``ControlModel``
   (``benchmarks/steering.py``'s contenders);
5. ``tcav.md``: CAVs + TCAV over every layer, ours vs captum's ``TCAV`` (``benchmarks/tcav.py``:
   French against 10 random sets), seconds of each and the parity of their scores;
6. ``tests.md``: ``pytest -m "not slow"`` with ``INTERP_TEST_DEVICE`` set to the device (the shared
   model fixtures load there; no default model needed); test files that cannot be collected there
   (an optional package the machine lacks) are listed by reason;
7. ``corpus.md`` (part ``corpus``, with ``--corpus TOKENS.npy``): SAEs at scale on a token
   file (``benchmarks/build_corpus.py``): TopK and top-AFA SAEs in the top-AFA paper's regime
   (per-token standardised inputs, no ``k_max``, its lambda sweep, width 16x) through
   ``interp.sae.train``, with FVU, CE recovered and L0 of each, and tokens/s;
8. ``slow-tests.md``: ``pytest -m slow`` (the default-model tests) on the device, stopped at what is
   left of ``--budget-s``.

The model loads with the first part that needs it, so ``--parts tests`` runs without one. A part
that would start with under 30 s of ``--budget-s`` left says so instead of running.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/gpu.py --device cuda --saelens-path /opt/saelens-site
    HF_HUB_OFFLINE=1 python benchmarks/gpu.py --device cuda --parts corpus --corpus data/corpus/tokens.npy
    HF_HUB_OFFLINE=1 python benchmarks/gpu.py --device cpu --quick        # a smoke run

``--saelens-path`` is made with ``pip install --no-deps --target DIR sae-lens "transformer-lens<4"
better-abc simple-parsing docstring-parser wandb`` (and what wandb imports); the rest of SAELens's
imports come from this environment.
For a GPU machine without network access, ``benchmarks/gpu_bundle.py`` packs the wheels, the model
and the corpus into three loads and ``benchmarks/gpu_device.sh`` runs this script there
(``docs/scale.md``).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
SWEEPS = {"resid_pre": ("layer", "pos"), "head_z": ("layer", "head")}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rows_from_free_memory(model, seq: int, device: str) -> int | None:
    """Rows per patched forward from the GPU's free memory (half of it), with the engine's per-row estimate."""
    if not device.startswith("cuda"):
        return None
    free, _ = torch.cuda.mem_get_info()
    dims = model.dims
    per_row = 4 * seq * (4 * dims.d_model + 3 * dims.d_mlp + dims.n_heads * seq) + 4 * dims.d_vocab
    return max(1, int(free * 0.5 // per_row))


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def patching_part(model, task, device: str, subset: int) -> str:
    from patching_sweep import naive_runner, subset_cells, tl_runner

    from interp.patching import patch_sweep
    from interp.tasks import get_metric

    metric = get_metric("logit_diff")
    seq = task.clean.shape[1]
    max_rows = rows_from_free_memory(model, seq, device)
    rows = []
    for sweep in SWEEPS:
        total = model.dims.n_layers * (seq if sweep == "resid_pre" else model.dims.n_heads)
        sync(device)
        start = time.perf_counter()
        result = patch_sweep(model, task, sweep, max_rows=max_rows)
        sync(device)
        ours = time.perf_counter() - start
        rows.append([sweep, "ours", f"{total} / {total}", f"{ours:.2f}", "1.00", result.cost.forward_passes,
                     f"{result.cost.flop_fraction:.3f}", "0"])
        cells = subset_cells(sweep, model, task, subset)
        for name, make in (("one forward per cell", naive_runner), ("transformerlens", tl_runner)):
            try:
                run = make(model, task, metric, sweep)
                sync(device)
                start = time.perf_counter()
                values = [run(a, b) for a, b in cells]
                sync(device)
                seconds = (time.perf_counter() - start) * total / len(cells)
                diff = max(float((v.double().cpu() - result.values[:, a, b].double().cpu()).abs().max())
                           for v, (a, b) in zip(values, cells, strict=True))
                rows.append([sweep, name, f"{len(cells)} / {total}", f"{seconds:.2f}", f"{seconds / ours:.2f}", total + 1,
                             "1.000", f"{diff:.1e}"])
            except Exception as error:  # noqa: BLE001 - a contender failing is a result to report, not a crash
                rows.append([sweep, name, "-", "failed", "-", "-", "-", f"{type(error).__name__}: {str(error)[:80]}"])
    return (f"rows per forward (ours): {max_rows or 'CPU default budget'}\n\n"
            + markdown(["sweep", "contender", "cells run / total", "seconds (scaled)", "x ours", "forwards",
                        "FLOPs vs naive", "max abs diff vs ours"], rows))


def tl_atp(model, task, sweep: str) -> tuple[float, torch.Tensor]:
    """AtP with TransformerLens hooks: (clean - corrupt) . d metric / d activation at the corrupt run."""
    import copy
    import tempfile

    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    directory = tempfile.mkdtemp()
    model.tokenizer.save_pretrained(directory)
    bridge = TransformerBridge.boot_transformers(
        directory, hf_model=copy.deepcopy(model.hf), tokenizer=AutoTokenizer.from_pretrained(directory)
    )
    layers = range(model.dims.n_layers)
    # the bridge's own hook points (hook_resid_pre and attn.hook_z are aliases of these)
    names = [f"blocks.{layer}.hook_in" if sweep == "resid_pre" else f"blocks.{layer}.attn.o.hook_in" for layer in layers]
    rows = torch.arange(len(task))
    start = time.perf_counter()
    with torch.no_grad():
        _, clean = bridge.run_with_cache(task.clean.input_ids, names_filter=lambda name: name in names)
    saved: dict[str, torch.Tensor] = {}

    def keep(tensor: torch.Tensor, hook) -> torch.Tensor:
        tensor.retain_grad()
        saved[hook.name] = tensor
        return tensor

    with bridge.hooks(fwd_hooks=[(name, keep) for name in names]):
        logits = bridge(task.corrupt.input_ids)
    (logits[rows, -1, task.answers] - logits[rows, -1, task.wrong]).sum().backward()
    scores = []
    for name in names:
        delta = (clean[name] - saved[name].detach()) * saved[name].grad
        if sweep == "resid_pre":
            scores.append(delta.sum(-1).mean(0))
        else:
            scores.append(delta.reshape(*delta.shape[:2], model.dims.n_heads, -1).sum(-1).sum(1).mean(0))
    return time.perf_counter() - start, torch.stack(scores).detach().cpu()


def atp_part(model, task, device: str) -> str:
    from interp.attribution import atp

    rows = []
    for sweep in SWEEPS:
        sync(device)
        start = time.perf_counter()
        ours = atp(model, task, sweep)
        sync(device)
        seconds = time.perf_counter() - start
        try:
            tl_seconds, tl_scores = tl_atp(model, task, sweep)
            mine = ours.effects().double().cpu().mean(0).flatten()
            theirs = tl_scores.double().flatten()
            r = float(torch.corrcoef(torch.stack([mine, theirs]))[0, 1]) if mine.shape == theirs.shape else float("nan")
            rows.append([sweep, f"{seconds:.3f}", f"{tl_seconds:.3f}", f"{tl_seconds / seconds:.2f}", f"{r:.4f}"])
        except Exception as error:  # noqa: BLE001 - reported in the table
            rows.append([sweep, f"{seconds:.3f}", "failed", "-", f"{type(error).__name__}: {str(error)[:80]}"])
    return markdown(["sweep", "ours (s)", "TransformerLens hooks (s)", "TL / ours", "correlation of estimates"], rows)


def saelens_rate(tokens: torch.Tensor, steps: int, d_sae: int, device: str, saelens_path: str | None) -> dict | str:
    """SAELens's trainer on ``tokens`` in a child process (``benchmarks/sae_train.py --worker saelens``).

    SAELens pins transformer-lens < 4, so it cannot share this environment: the child's
    ``PYTHONPATH`` starts with ``saelens_path``, a site directory holding sae-lens and
    transformer-lens < 4. The tokens travel through a temporary safetensors file; the child prints
    one JSON line. Returns that dict, or a line saying why it did not run.
    """
    import json
    import tempfile

    from safetensors.torch import save_file

    if not saelens_path:
        return "not run: give --saelens-path DIR, a site directory holding sae-lens and transformer-lens<4"
    if not Path(saelens_path).is_dir():
        return f"not run: --saelens-path {saelens_path} is not a directory"
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "acts.safetensors"
        save_file({"acts": tokens.detach().float().cpu().contiguous()}, str(file))
        paths = [saelens_path] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(paths)}
        command = [sys.executable, str(ROOT / "benchmarks" / "sae_train.py"), "--worker", "saelens", "--cache", str(file),
                   "--steps", str(steps), "--warmup", "1", "--device", device, "--d-sae", str(d_sae),
                   "--threads", str(torch.get_num_threads())]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=300)
        except subprocess.TimeoutExpired:
            return "failed: the SAELens child ran past 300 s"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"failed (exit {done.returncode}): {lines[-1][:200] if lines else 'no stderr'}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def sae_part(model, device: str, steps: int, saelens_path: str | None) -> str:
    from sae_train import BATCH, K, train_rate

    from interp.activations import ALL, extract
    from interp.sae.tokens import DemoSource, load_tokens

    site = f"blocks.{model.dims.n_layers // 2}.hook_resid_post"
    rows = load_tokens(DemoSource(), model.tokenizer, 128).ids[: 64 if steps <= 3 else 512]
    acts = extract(model, torch.as_tensor(rows, dtype=torch.long), [site], ALL).acts[site].reshape(-1, model.dims.d_model)
    order = torch.randperm(acts.shape[0], generator=torch.Generator().manual_seed(0))
    tokens = acts.float()[order.to(acts.device)].to(device).contiguous()  # one fixed order, read alike by both trainers
    d_sae = 16 * model.dims.d_model
    precision = "bf16 autocast, float32 master weights" if device.startswith("cuda") else "float32"
    ours = train_rate("ours", tokens, steps, d_sae, device, warmup=1)
    theirs = saelens_rate(tokens, steps, d_sae, device, saelens_path)
    shape = f"TopK k={K}, d_sae {d_sae}"
    table = [["ours (interp SAETrainer)", shape, precision, steps, f"{ours['tokens_per_second']:,.0f}", "1.00",
              f"{ours['fvu_first_batch']:.3f}"]]
    if isinstance(theirs, str):
        table.append(["SAELens", "-", "-", "-", theirs, "-", "-"])
        ratio = ""
    else:
        table.append([f"SAELens {theirs.get('version', '')} SAETrainer + TopKTrainingSAE", shape, precision, theirs["steps"],
                      f"{theirs['tokens_per_second']:,.0f}", f"{theirs['tokens_per_second'] / ours['tokens_per_second']:.2f}",
                      f"{theirs['fvu_first_batch']:.3f}"])
        ratio = f"\nours / SAELens tokens/s: {ours['tokens_per_second'] / theirs['tokens_per_second']:.2f}x\n"
    return (f"{len(tokens):,} cached activations of {site} (demo corpus, 128-token rows, one fixed random order); "
            f"batches of {BATCH} tokens, Adam lr 4e-4, one warm-up step before the timed steps; SAELens in its own "
            "process on the same activations. FVU: both SAEs on the first batch after training, float32 (the two "
            "inits differ: a sanity check, not a quality comparison).\n\n"
            + markdown(["trainer", "SAE", "precision", f"steps of {BATCH} tokens", "tokens/s", "x ours", "FVU after"], table)
            + ratio)


def steering_part(model, device: str, quick: bool) -> str:
    from steering import NEW_TOKENS, PROMPT, generation, steering_layers

    from interp.concepts.data import load_concept
    from interp.steering import build_vectors, load_contrast

    pairs, rounds, batch = (8, 1, 4) if quick else (None, 5, 32)
    layer, layers = steering_layers(model.dims.n_layers)
    contrast = load_contrast(ROOT / "data/steering/sentiment.jsonl").take(pairs)
    sync(device)
    start = time.perf_counter()
    vectors = build_vectors(model, contrast, layers=layers)["mean_diff"]
    sync(device)
    built = time.perf_counter() - start
    prompts = load_concept(ROOT / "data/concepts/random.jsonl").prompts[:batch]
    tables = []
    for label, chosen in ((f"one prompt ({PROMPT!r})", [PROMPT]), (f"{batch} prompts at once (left-padded)", prompts)):
        rates = generation(model, vectors, chosen, rounds)
        plain = rates[0][1]
        rows = [[name, "not run: its package does not import here", "-"] if math.isnan(rate)
                else [name, f"{rate:,.1f}", f"{rate / plain:.2f}"] for name, rate in rates]
        tables.append(f"### {label}\n\n" + markdown(["contender", "tokens/s", "vs our plain generate"], rows))
    return (f"Greedy generation, {NEW_TOKENS} new tokens per prompt, fastest of {rounds} interleaved rounds; tokens/s "
            f"counts every prompt's new tokens. Vectors: mean difference of {len(contrast)} pairs of "
            f"data/steering/sentiment.jsonl at layers {layers} (built in {built:.1f} s); one vector: layer {layer} at "
            f"0.25 of its median token norm; {len(layers)} vectors: 0.1 each. The anchors take the same raw strength "
            "at the same layer.\n\n" + "\n".join(tables))


def tcav_part(model, quick: bool) -> str:
    from tcav import LENGTH, N_CONCEPT, N_TARGET, answer_token, compare

    layers = list(range(model.dims.n_layers))
    n_random, repeats = (2, 1) if quick else (10, 2)
    for length in (LENGTH, 12, 16):  # a small tokenizer needs longer prompts for enough distinct ones
        try:
            result = compare(model, layers, n_random, repeats, length)
            break
        except SystemExit:
            if length == 16:
                raise
    times = result["times"]
    median = {side: sorted(values)[len(values) // 2] for side, values in times.items()}
    rows = [[name, ", ".join(f"{t:.2f}" for t in times[side]), f"{median[side]:.2f}"]
            for side, name in (("ours", "ours (every layer in one pass)"), ("captum", "captum TCAV (one layer at a time)"))]
    return (f"One concept (French) against {n_random} random English sets of {N_CONCEPT} prompts, all {len(layers)} "
            f"layers, {N_TARGET} target prompts scored by the logit of {answer_token(model)[1]!r}, every prompt {length} "
            f"tokens; the same mean-difference CAV on the last token on both sides; {repeats} interleaved run(s) of "
            "each side.\n\n"
            + markdown(["side", "seconds per run", "median"], rows)
            + f"\ncaptum / ours (medians): {median['captum'] / median['ours']:.2f}x\n\n"
            f"Parity over every (random set, layer): largest sign_count difference {result['sign_diff']:.3g}; largest "
            f"magnitude difference {result['mag_diff']:.3g} (magnitudes up to {result['mag_scale']:.3g}).\n")


def collection_errors(output: str) -> dict[str, list[str]]:
    """Test files pytest could not collect, by reason (the last ``E`` line of each), from its ERRORS section."""
    reasons: dict[str, str] = {}
    current = None
    for line in output.splitlines():
        header = re.fullmatch(r"_+ ERROR collecting (\S+) _+", line)
        if header:
            current = header.group(1)
            reasons[current] = "(no reason given)"
        elif line.startswith(("_", "=")):
            current = None
        elif current and line.startswith("E   "):
            reasons[current] = line[4:].strip().removeprefix("ModuleNotFoundError: ")
    groups: dict[str, list[str]] = {}
    for path, reason in reasons.items():
        groups.setdefault(reason, []).append(path)
    return groups


def tests_part(device: str, selection: list[str], limit: float) -> str:
    """pytest over ``selection`` with the shared model fixtures on ``device``, stopped after ``limit`` seconds.

    Files that cannot be collected there (an optional package the machine lacks) are grouped by reason
    instead of stopping the run; every failure is listed."""
    env = {**os.environ, "INTERP_TEST_DEVICE": device, "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}  # untruncated reasons
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                               *selection, "-q"], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                              timeout=max(limit, 1))
        output, code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        code = f"stopped after {limit:.0f} s"
    summary = (output.strip().splitlines() or ["(no output)"])[-1]
    rows = [[" ".join(selection), code, summary, f"{time.perf_counter() - start:.0f}"]]
    uncollected = collection_errors(output)
    for reason, paths in uncollected.items():
        listed = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
        rows.append(["", "", f"not collected there: {reason} ({len(paths)} file{'s' * (len(paths) != 1)}: {listed})", ""])
    skipped = {path for paths in uncollected.values() for path in paths}
    failures = [line for line in output.splitlines()
                if line.startswith(("FAILED", "ERROR")) and (line.split() + [""])[1] not in skipped]
    missing: dict[str, list[str]] = {}  # failures for want of a package, grouped like the collection errors
    for line in failures:
        package = re.search(r"ModuleNotFoundError: (No module named '[^']+')", line)
        if package:
            missing.setdefault(package.group(1), []).append(line.split()[1])
    for reason, tests in missing.items():
        rows.append(["", "", f"failed there for want of a package: {reason} ({len(tests)} tests: {tests[0]}, ...)", ""])
    rows += [["", "", line[:200], ""] for line in failures if "ModuleNotFoundError" not in line][:60]
    return f"INTERP_TEST_DEVICE={device}\n\n" + markdown(["pytest", "exit", "summary", "seconds"], rows)


def corpus_part(model, model_name: str, path: str, tokens: int, device: str, out: Path, quick: bool) -> str:
    """TopK and top-AFA SAEs in the top-AFA paper's regime on a token file; ``quick``: one of each, few tokens."""
    from interp.runs import RunStore
    from interp.sae import TrainConfig, train

    width, site = 16 * model.dims.d_model, f"blocks.{model.dims.n_layers // 2}.hook_resid_post"
    ks = (64,) if quick else (64, 256, 1024)
    coefficients = (("1_32", 1 / 32),) if quick else (("1_128", 1 / 128), ("1_64", 1 / 64), ("1_32", 1 / 32),
                                                      ("1_24", 1 / 24), ("1_16", 1 / 16))
    saes = [{"name": f"topk-{k}", "site": site, "d_sae": width, "normalize_activations": "layer_norm",
             "activation": {"kind": "topk", "k": k}} for k in ks]
    saes += [{"name": f"topafa-{name}", "site": site, "d_sae": width, "normalize_activations": "layer_norm",
              "activation": {"kind": "top_afa", "afa_coeff": value, "afa_target": "input"}} for name, value in coefficients]
    tokens = min(tokens, 4096) if quick else tokens
    config = TrainConfig.model_validate({
        "model": model_name, "device": device, "training_tokens": tokens, "checkpoint_every": 0,
        "data": {"source": {"kind": "tokens", "path": path}, "context_size": 128, "eval_rows": 8 if quick else 64},
        "store": {"batch_size": 4096, "buffer_rows": 32 if quick else 512, "model_batch_size": 32 if quick else 256,
                  "cache": False},
        "optim": {"warmup_steps": 100, "decay_steps": max(1, tokens // 4096 // 5)},
        "features": {"enabled": False}, "saes": saes,
    })
    run = train(config, RunStore(out / "runs"), progress=False)
    summary = run.manifest["summary"]
    rows = [[name, f"{v['l0']:.0f}", f"{v['fvu']:.3e}", f"{v['ce_recovered']:.4f}", f"{v['dead_fraction']:.3f}"]
            for name, v in summary.items() if isinstance(v, dict)]
    return (f"{tokens:,} training tokens from {path}; train tokens/s (all SAEs of one pass): "
            f"{summary.get('train_tokens_per_second', float('nan')):,.0f}\n\n"
            + markdown(["SAE", "L0", "FVU (normalised MSE)", "CE recovered", "dead fraction"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="every part, small (a CPU smoke run)")
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--parts", default="patching,atp,sae,steering,tcav,tests,slow-tests",
                        help="comma-separated parts to run, in order (corpus, which needs --corpus, is not a default)")
    parser.add_argument("--saelens-path", default=None,
                        help="site directory holding sae-lens and transformer-lens<4, for SAELens's trainer in the sae part")
    parser.add_argument("--corpus", default=None, help="token file (.npy) for the SAEs-at-scale part")
    parser.add_argument("--corpus-tokens", type=int, default=20_000_000)
    parser.add_argument("--budget-s", type=float, default=560.0,
                        help="seconds this run may take: the test parts stop at what is left of it")
    args = parser.parse_args()
    began = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from patching_sweep import make_task

    import interp

    @functools.cache
    def loaded():
        """The model and the IOI task, loaded by the first part that needs them (the test parts do not)."""
        model = interp.load_model(args.model, device=args.device)
        return model, make_task(model, n=8 if args.quick else 32).to(args.device)

    def left() -> float:
        return args.budget_s - (time.perf_counter() - began)

    machine = (f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}), "
               f"torch {torch.__version__}")
    fast = ["tests/test_sites.py"] if args.quick else ["-m", "not slow"]
    slow = ["tests/sae/test_integration.py"] if args.quick else ["-m", "slow"]
    parts = {
        "patching": lambda: patching_part(*loaded(), args.device, 4 if args.quick else 24),
        "atp": lambda: atp_part(*loaded(), args.device),
        "sae": lambda: sae_part(loaded()[0], args.device, 2 if args.quick else 50, args.saelens_path),
        "steering": lambda: steering_part(loaded()[0], args.device, args.quick),
        "tcav": lambda: tcav_part(loaded()[0], args.quick),
        "corpus": lambda: corpus_part(loaded()[0], args.model, args.corpus, args.corpus_tokens, args.device, out, args.quick),
        "tests": lambda: tests_part(args.device, fast, left() - 5),
        "slow-tests": lambda: tests_part(args.device, slow, left() - 5),
    }
    chosen = list(dict.fromkeys(p for p in args.parts.split(",") if p))
    unknown = [name for name in chosen if name not in parts]
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(parts)}")
    if "corpus" in chosen and not (args.corpus and Path(args.corpus).is_file()):
        raise SystemExit(f"no token file {args.corpus}: give --corpus, a file built with benchmarks/build_corpus.py")
    for name in chosen:
        start = time.perf_counter()
        header = machine + "\n\n"
        try:
            if left() < 30:
                text = f"{header}not run: {max(left(), 0):.0f} s of --budget-s {args.budget_s:g} left\n"
            else:
                if name not in ("tests", "slow-tests"):
                    model, task = loaded()
                    pairs = f", {len(task)} IOI pairs of {task.clean.shape[1]} tokens" if name in ("patching", "atp") else ""
                    header = f"{machine}, model {model.name}{pairs}\n\n"
                text = header + parts[name]()
        except (Exception, SystemExit):  # noqa: BLE001 - one part failing must not lose the others' tables
            text = header + "failed:\n\n```\n" + traceback.format_exc() + "```\n"
        text += f"\n({time.perf_counter() - start:.0f} s)\n"
        (out / f"{name}.md").write_text(text)
        print(f"## {name}\n\n{text}", flush=True)


if __name__ == "__main__":
    main()
