"""Exact patching sweeps on the default model: ours vs TransformerLens vs nnsight vs a naive loop.

Task: 32 IOI pairs (ABC corruption) for SmolLM2-135M-Instruct, all of one token length (the most
common length in a larger seeded draw), because TransformerLens's patching helpers take token ids
without an attention mask. Metric: logit difference IO - S at the last position, per example.
Sweeps: the residual stream ``resid_pre`` by (layer, position) and head outputs ``z`` by
(layer, head), both denoising (clean activations into the corrupt run).

Contenders, each in its own subprocess (so peak RSS is its own):

* **ours**: :func:`interp.patching.patch_sweep`, every cell;
* **ours-all-rows**: the same with ``skip_noop_rows=False`` (every (cell, example) pair runs, even
  where the patch writes the value the site already has), to show what each saving contributes;
* **naive**: one full forward of the corrupt batch per cell with a plain :class:`interp.Patch`;
* **TransformerLens 4.3**: ``get_act_patch_resid_pre`` / ``get_act_patch_attn_head_out_all_pos`` on a
  ``TransformerBridge`` booted from the same weights (one full forward per cell, eager attention);
* **nnsight 0.8**: one ``trace`` per cell assigning the clean value into the layer's input (residual)
  or the ``o_proj`` input slice (head), as nnsight's patching tutorial does.

The slow three run an evenly spread subset of cells (``--subset``) and their time is scaled to the
full sweep (stated in the table). Reported: wall time, forward passes, FLOPs computed (the analytic
count of :mod:`interp.flops`), peak RSS, and the max |difference| of per-example values
against ours on the shared cells. Results go to the ``## Patching sweeps`` section of BENCHMARKS.md.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/patching_sweep.py [--subset 24] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = {"resid_pre": ("layer", "pos"), "head_z": ("layer", "head")}


def make_task(model, n: int = 32, seed: int = 0):
    """32 IOI pairs of one token length (TransformerLens's helpers take no attention mask)."""
    from interp.tasks import ioi_task

    pool = ioi_task(model, n=8 * n, seed=seed)
    lengths = pool.clean.attention_mask.sum(1).tolist()
    common, _ = Counter(lengths).most_common(1)[0]
    rows = [i for i, length in enumerate(lengths) if length == common][:n]
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} IOI pairs of length {common}; raise the pool size")
    return pool.subset(rows)


def subset_cells(sweep: str, model, task, count: int) -> list[tuple[int, int]]:
    dims = model.dims
    second = task.clean.shape[1] if sweep == "resid_pre" else dims.n_heads
    cells = [(layer, j) for layer in range(dims.n_layers) for j in range(second)]
    step = max(1, len(cells) // count)
    return cells[::step][:count]


def run_contender(name: str, subset: int, threads: int) -> dict:
    """Run one contender in this process; returns timings, values and costs as JSON-able data."""
    torch.set_num_threads(threads)
    import interp
    from interp.patching import patch_sweep
    from interp.flops import forward_flops
    from interp.tasks import get_metric

    model = interp.load_model("smollm2-135m")
    task = make_task(model)
    metric = get_metric("logit_diff")
    dims, seq = model.dims, task.clean.shape[1]
    naive_cell_flops = forward_flops(dims, model.arch.gated_mlp, len(task), seq, 0, dims.n_layers, seq)
    out: dict = {"examples": len(task), "seq_len": seq}
    for sweep in SWEEPS:
        cells = subset_cells(sweep, model, task, subset)
        total = dims.n_layers * (seq if sweep == "resid_pre" else dims.n_heads)
        if name in ("ours", "ours-all-rows"):
            start = time.perf_counter()
            result = patch_sweep(model, task, sweep, skip_noop_rows=name == "ours")
            seconds = time.perf_counter() - start
            values = {f"{a},{b}": result.values[:, a, b].tolist() for a, b in cells}
            out[sweep] = {"seconds": seconds, "cells_run": total, "total_cells": total, "forwards": result.cost.forward_passes,
                          "flops": result.cost.flops, "noop_rows": result.cost.noop_rows, "values": values}
            continue
        runner = {"naive": naive_runner, "transformerlens": tl_runner, "nnsight": nnsight_runner}[name](model, task, metric, sweep)
        start = time.perf_counter()
        values = {f"{a},{b}": runner(a, b).tolist() for a, b in cells}
        seconds = time.perf_counter() - start
        out[sweep] = {"seconds": seconds * total / len(cells), "cells_run": len(cells), "total_cells": total,
                      "forwards": total + 1, "flops": naive_cell_flops * total, "values": values}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _clean_cache(model, task, sites):
    _, cache = model.run_with_cache(task.clean, sites=sites)
    return cache


def naive_runner(model, task, metric, sweep):
    from interp import Patch

    kind = "resid_pre" if sweep == "resid_pre" else "z"
    cache = _clean_cache(model, task, [s for s in model.sites if s.endswith("hook_" + kind)])

    def run(layer: int, j: int) -> torch.Tensor:
        name = f"blocks.{layer}.hook_resid_pre" if kind == "resid_pre" else f"blocks.{layer}.attn.hook_z"
        patch = Patch(site=name, source=cache[name], positions=[j]) if kind == "resid_pre" else Patch(site=name, source=cache[name], heads=[j])
        return metric(model.run(task.corrupt, [patch])[:, -1], task)

    return run


def tl_runner(model, task, metric, sweep):
    import pandas as pd
    from transformer_lens import patching
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    directory = tempfile.mkdtemp()
    model.tokenizer.save_pretrained(directory)
    bridge = TransformerBridge.boot_transformers(
        directory, hf_model=copy.deepcopy(model.hf), tokenizer=AutoTokenizer.from_pretrained(directory)
    )
    rows = torch.arange(len(task))

    def tl_metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[rows, -1, task.answers] - logits[rows, -1, task.wrong]

    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(task.clean.input_ids)
    helper = patching.get_act_patch_resid_pre if sweep == "resid_pre" else patching.get_act_patch_attn_head_out_all_pos
    axes = list(SWEEPS[sweep])

    def run(layer: int, j: int) -> torch.Tensor:
        with torch.no_grad():
            result = helper(bridge, task.corrupt.input_ids, clean_cache, tl_metric, index_axis_names=None,
                            index_df=pd.DataFrame([(layer, j)], columns=axes), reduce="none")
        return result.values[0].double()

    return run


def nnsight_runner(model, task, metric, sweep):
    from nnsight import TransformersModel

    lm = TransformersModel(model.hf, tokenizer=model.tokenizer, task="text-generation")
    inputs = {"input_ids": task.corrupt.input_ids, "attention_mask": task.corrupt.attention_mask,
              "position_ids": task.corrupt.position_ids}
    clean_inputs = {"input_ids": task.clean.input_ids, "attention_mask": task.clean.attention_mask,
                    "position_ids": task.clean.position_ids}
    layers, d_head = model.dims.n_layers, model.dims.d_head
    clean = []
    with torch.no_grad(), lm.trace(**clean_inputs, use_cache=False):
        for layer in range(layers):
            if sweep == "resid_pre":
                clean.append(lm.model.layers[layer].input.save())
            else:
                clean.append(lm.model.layers[layer].self_attn.o_proj.input.save())

    def run(layer: int, j: int) -> torch.Tensor:
        # nnsight runs the body of a trace in its own frame: bind what it reads to plain locals
        source, span = clean[layer], slice(j * d_head, (j + 1) * d_head)
        with torch.no_grad(), lm.trace(**inputs, use_cache=False):
            if sweep == "resid_pre":
                lm.model.layers[layer].input[:, j] = source[:, j]
            else:
                lm.model.layers[layer].self_attn.o_proj.input[:, :, span] = source[:, :, span]
            logits = lm.output.logits[:, -1].save()
        return metric(logits, task)

    return run


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"## Patching sweeps\n.*?(?=\n## |\Z)", re.S)
    current = pattern.sub(lambda _: text.rstrip() + "\n", current) if pattern.search(current) else current.rstrip() + "\n\n" + text
    path.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--subset", type=int, default=24, help="cells run by the slow contenders per sweep")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contenders", default="ours,ours-all-rows,naive,transformerlens,nnsight")
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(run_contender(args.contender, args.subset, args.threads)))
        return
    results = {}
    for name in args.contenders.split(","):
        print(f"running {name} ...", flush=True)
        done = subprocess.run([sys.executable, __file__, "--contender", name, "--subset", str(args.subset), "--threads", str(args.threads)],
                              capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:])
            raise SystemExit(f"{name} failed")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    ours = results["ours"]
    lines = [
        "## Patching sweeps",
        "",
        f"Machine: {machine()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {args.threads} torch threads. "
        f"Task: {ours['examples']} IOI pairs (ABC), length {ours['seq_len']}, SmolLM2-135M-Instruct, float32, denoising, "
        "logit difference. Slow contenders ran an evenly spread subset of cells and their time is scaled to "
        f"the full sweep (cells run / total shown); FLOPs are the analytic count (naive = every block, every position, all logits). "
        "Produced by `benchmarks/patching_sweep.py`.",
        "",
        "Ours answers (cell, example) pairs whose patch writes the value the site already has from the unpatched "
        "run, without a forward (clean and corrupt IOI prompts share their first tokens, and in block 0 every "
        "token the corruption leaves alone): "
        + "; ".join(f"{sweep} {ours[sweep]['noop_rows']} of {ours[sweep]['total_cells'] * ours['examples']} pairs" for sweep in SWEEPS)
        + ". `ours-all-rows` runs every pair, to separate that saving from the causal ones "
        "(start at the patched block and position, logits only at the last position).",
        "",
        "| sweep | contender | cells run / total | wall time (s) | x ours | forwards | FLOPs (T) | FLOPs vs naive | peak RSS (MB) | max abs diff vs ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sweep in SWEEPS:
        base = ours[sweep]
        naive_flops = results.get("naive", ours)[sweep]["flops"] if "naive" in results else None
        for name, data in results.items():
            entry = data[sweep]
            diffs = [max(abs(a - b) for a, b in zip(entry["values"][k], base["values"][k])) for k in entry["values"] if k in base["values"]]
            lines.append(
                f"| {sweep} | {name} | {entry['cells_run']} / {entry['total_cells']} | {entry['seconds']:.1f} | "
                f"{entry['seconds'] / base['seconds']:.2f} | {entry['forwards']} | {entry['flops'] / 1e12:.2f} | "
                f"{(entry['flops'] / naive_flops) if naive_flops else float('nan'):.3f} | {data['peak_rss_mb']:.0f} | "
                f"{max(diffs) if diffs else float('nan'):.1e} |"
            )
    section = "\n".join(lines) + "\n"
    print(section)
    write_section(section)


if __name__ == "__main__":
    main()
