"""How the patching engine's cost grows with the work: prompt length and number of prompts.

The task is IOI (ABC corruption) on SmolLM2-135M-Instruct, float32, denoising, logit difference.
Longer prompts are made by putting the same run of filler tokens (ordinary English) in front of
every clean and corrupt prompt, so the task stays the same and only the length changes. Two sweeps,
kept small so the curve fits a few minutes of a CPU:

* ``resid_pre`` at block 25 by position (one cell per position: cells grow with the length);
* ``head_z`` at blocks 25 and 29 by head (18 cells, each over all positions).

(Late blocks keep the curve within minutes of a loaded 2-core CPU; a patched forward starts at the
patched block, so earlier blocks cost more per cell and give larger FLOP fractions, see the
``## Patching sweeps`` section for whole-model sweeps.)

Two curves: lengths 15, 30, 60, 120 tokens at 8 prompts, and 8, 16, 32, 64, 128 prompts at 15
tokens. For each point: our wall time, forwards and FLOP fraction (FLOPs computed / FLOPs of one
full forward per cell, the analytic count of :mod:`interp.flops`); and, at the ends of each curve,
TransformerLens's patching helper on an evenly spread subset of cells with its time scaled to the
sweep (it runs one full forward per cell: FLOP fraction 1). Contenders run interleaved in one
process so a loaded machine slows both alike; the ``## Scaling`` section of BENCHMARKS.md is written
(or replaced) at the end.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/scaling.py [--threads 2] [--tl-cells 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

FILLER = (
    "The morning was quiet in the small town by the river, and the shops along the main street were just "
    "opening their doors. People walked slowly, talking about the weather, the market and the long summer "
    "that had finally come to an end. Children ran past the old church towards the school at the top of the hill. "
)
SWEEPS = {"resid_pre": {"layers": [25]}, "head_z": {"layers": [25, 29]}}
LENGTHS = (15, 30, 60, 120)
PROMPTS = (8, 16, 32, 64, 128)


def lengthen(model, task, length: int):
    """``task`` with the same filler tokens in front of every prompt, to ``length`` tokens in all."""
    from interp.tokenize import TokenBatch

    extra = length - task.clean.shape[1]
    if extra <= 0:
        return task
    filler = model.tokenizer(FILLER * 4, add_special_tokens=False, return_tensors="pt")["input_ids"][0, :extra]
    prefix = filler.unsqueeze(0).expand(len(task), -1)
    clean = TokenBatch.from_ids(torch.cat([prefix, task.clean.input_ids], dim=1))
    corrupt = TokenBatch.from_ids(torch.cat([prefix, task.corrupt.input_ids], dim=1))
    return dataclasses.replace(task, clean=clean, corrupt=corrupt)


def tl_bridge(model):
    import copy
    import tempfile

    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    directory = tempfile.mkdtemp()
    model.tokenizer.save_pretrained(directory)
    return TransformerBridge.boot_transformers(
        directory, hf_model=copy.deepcopy(model.hf), tokenizer=AutoTokenizer.from_pretrained(directory)
    )


def tl_seconds(bridge, task, sweep: str, cells: list[tuple[int, int]]) -> float:
    """TransformerLens's helper on ``cells`` (one full forward each); seconds per cell."""
    import pandas as pd
    from transformer_lens import patching

    rows = torch.arange(len(task))

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[rows, -1, task.answers] - logits[rows, -1, task.wrong]

    helper = patching.get_act_patch_resid_pre if sweep == "resid_pre" else patching.get_act_patch_attn_head_out_all_pos
    axes = ["layer", "pos"] if sweep == "resid_pre" else ["layer", "head"]
    with torch.no_grad():
        _, cache = bridge.run_with_cache(task.clean.input_ids)
        start = time.perf_counter()
        helper(bridge, task.corrupt.input_ids, cache, metric, index_axis_names=None,
               index_df=pd.DataFrame(cells, columns=axes), reduce="none")
    return (time.perf_counter() - start) / len(cells)


def point(model, task, bridge, tl_cells: int) -> list[dict]:
    from interp.patching import patch_sweep

    rows = []
    for sweep, where in SWEEPS.items():
        start = time.perf_counter()
        result = patch_sweep(model, task, sweep, **where)
        seconds = time.perf_counter() - start
        cost = result.cost
        cells = int(result.values[0].numel())
        row = {"sweep": sweep, "prompts": len(task), "length": task.clean.shape[1], "cells": cells, "seconds": seconds,
               "forwards": cost.forward_passes, "flop_fraction": cost.flop_fraction, "tl_seconds": None}
        if bridge is not None:
            second = list(range(task.clean.shape[1])) if sweep == "resid_pre" else list(range(model.dims.n_heads))
            grid = [(layer, j) for layer in where["layers"] for j in second]
            subset = grid[:: max(1, len(grid) // tl_cells)][:tl_cells]
            row["tl_seconds"] = tl_seconds(bridge, task, sweep, subset) * cells
            row["tl_cells"] = len(subset)
        rows.append(row)
        print(row, flush=True)
    return rows


def load_average() -> float:
    return os.getloadavg()[0]


def table(rows: list[dict]) -> str:
    lines = [
        "| sweep | prompts | length | cells | ours (s) | forwards | FLOP fraction | TransformerLens (s, scaled) | TL / ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        tl = f"{r['tl_seconds']:.1f} ({r['tl_cells']} cells)" if r["tl_seconds"] is not None else "-"
        ratio = f"{r['tl_seconds'] / r['seconds']:.1f}" if r["tl_seconds"] is not None else "-"
        lines.append(f"| {r['sweep']} | {r['prompts']} | {r['length']} | {r['cells']} | {r['seconds']:.1f} | {r['forwards']} "
                     f"| {r['flop_fraction']:.3f} | {tl} | {ratio} |")
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"## Scaling\n.*?(?=\n## |\Z)", re.DOTALL)
    current = pattern.sub(lambda _: text.rstrip() + "\n", current) if pattern.search(current) else current.rstrip() + "\n\n" + text
    path.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tl-cells", type=int, default=3, help="TransformerLens cells per measured point")
    parser.add_argument("--quick", action="store_true", help="a few tiny points, no BENCHMARKS.md (a smoke run)")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from patching_sweep import make_task

    import interp

    model = interp.load_model(args.model)
    if args.quick:
        SWEEPS.update({k: {"layers": [model.dims.n_layers - 1]} for k in SWEEPS})
    lengths, prompts = ((15, 16), (2, 3)) if args.quick else (LENGTHS, PROMPTS)
    bridge = tl_bridge(model)
    base = make_task(model, n=max(prompts))
    loads = [load_average()]
    started = datetime.now(UTC)
    rows: list[dict] = []
    plan = [(length, prompts[0]) for length in lengths] + [(lengths[0], n) for n in prompts[1:]]
    for done, (length, n) in enumerate(plan, start=1):
        ends = (length, n) in {(lengths[0], prompts[0]), (lengths[-1], prompts[0]), (lengths[0], prompts[-1])}
        task = lengthen(model, base.subset(list(range(n))), length)
        rows += point(model, task, bridge if ends else None, args.tl_cells)
        loads.append(load_average())
        if not args.quick:  # written after every point, so a run stopped early keeps what it measured
            write_section(section(rows, loads, started, args.threads, done, len(plan)))
    print(table(rows))


def load_note(loads: list[float]) -> str:
    """What the machine's load during the run says about the seconds in the table."""
    span = f"1-minute load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores during the run"
    if max(loads) <= 1.5:
        return f"Quiet machine ({span}). The FLOP fractions and forward counts are exact."
    return (f"**The machine was shared and loaded** ({span}), so the seconds are not trustworthy timings; the FLOP "
            "fractions and forward counts are exact, and the TransformerLens / ours ratios (measured interleaved, point "
            "by point) are the best comparison this run gives.")


def section(rows: list[dict], loads: list[float], started: datetime, threads: int, done: int, planned: int) -> str:
    partial = "" if done == planned else f" **Only {done} of the {planned} planned points were measured in the time the run had.**"
    return (
        "## Scaling\n\n"
        f"Machine: {os.cpu_count()} cores, torch {torch.__version__}, {threads} torch thread(s); {started:%Y-%m-%d %H:%M} UTC. "
        f"{load_note(loads)}"
        f"{partial} "
        "Model SmolLM2-135M-Instruct, float32, IOI (ABC) denoising, logit difference; longer prompts carry the same filler "
        "tokens in front of every prompt. Sweeps: `resid_pre` at block 25 by position, `head_z` at blocks 25 and 29 by head "
        "(late blocks keep the run short; a patched forward starts at its block, so the FLOP fraction here is lower than "
        "for whole-model sweeps). TransformerLens ran an evenly spread subset of cells at the ends of each curve, its time "
        "scaled to the sweep. Produced by `benchmarks/scaling.py`.\n\n"
        f"{table(rows)}\n\n"
        "Reading the curve: a `resid_pre` cell at position p recomputes only positions p..T-1 from block 25 on, and a "
        "`head_z` cell every position from its block on. The filler that lengthens the prompts is the same in the clean "
        "and corrupt prompts, as any shared prefix is, so patching a `resid_pre` cell inside it writes the value the site "
        "already has and costs no forward: that is why the `resid_pre` FLOP fraction falls as the prompts grow, while "
        "TransformerLens's time grows with cells x length. `head_z` cells patch every position, so their FLOP fraction "
        "stays flat and time grows with the rows (prompts) and their length.\n"
    )

if __name__ == "__main__":
    main()
