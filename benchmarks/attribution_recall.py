"""Recall of the exact top components against cost (the AtP* paper's protocol) on the default model.

Run ``python benchmarks/attribution_recall.py [--runs DIR]``: it writes the section "## Recall
against cost (AtP* protocol)" of BENCHMARKS.md (replacing an older copy, leaving the others alone)
and, with ``--runs``, stores both comparisons as runs of kind ``"attribution"``, whose recall curves
the app's attribution page draws (:func:`interp.viz.attribution.recall_cost`).

What it measures. IOI prompt pairs (ABC corruption, logit difference, denoising) on
SmolLM2-135M-Instruct (float32, CPU, one thread). For each component type the exact sweep (the
patching engine) gives the true top 10 by ``|mean effect|``; each method's ranking is then verified
in order, and recall of that top 10 is read against cost = method passes (forward 1, backward 2) +
verified components (:mod:`interp.attribution.recall`). Methods: AtP, AtP + QK fix, AtP* with the
paper's unsigned GradDrop score (``atp*-unsigned``) and with the absolute value taken after
averaging over pairs (``atp*``, the default); AtP and AtP + QK fix are ranked both signed (``|mean estimate|``) and
unsigned (mean of per-pair ``|estimate|``). Two settings: the distribution (``PAIRS`` pairs) and a
single pair (the first one), where signed and unsigned rankings coincide.

``--tiny`` prints the same summary averaged over the tiny random test families (top 5, all cells).

Subsets (CPU budget on a loaded machine): layers 0, 10, 20 for attention and MLP outputs by
(layer, position); layers 0, 5, ..., 25 for head queries and keys by (layer, head); 64 seeded random
neurons of layer 25.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import interp  # noqa: E402
from interp.attribution import SweepRequest, compare, record  # noqa: E402
from interp.attribution.recall import recall_summary  # noqa: E402
from interp.runs import RunStore  # noqa: E402
from interp.tasks import ioi_task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADING = "## Recall against cost (AtP* protocol)"
PAIRS = 8
TOP_K = 10
LAYERS = list(range(0, 30, 5))
SMALL_LAYERS = [0, 10, 20]
NEURONS = sorted(random.Random(0).sample(range(1536), 64))
METHODS = ["atp", "atp+qk", "atp*", "atp*-unsigned"]


def requests() -> list[SweepRequest]:
    return [
        SweepRequest("attn_out", layers=SMALL_LAYERS),
        SweepRequest("mlp_out", layers=SMALL_LAYERS),
        SweepRequest("head_q", layers=LAYERS),
        SweepRequest("head_k", layers=LAYERS),
        SweepRequest("neuron", layers=[25], neurons=NEURONS),
    ]


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "|".join("---" if i < 2 else "---:" for i in range(len(frame.columns))) + "|\n"
    lines = []
    for row in frame.itertuples(index=False):
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n".join(lines)


def _table(summary: pd.DataFrame) -> pd.DataFrame:
    """component x (method, ranking): recall@10 / components verified for full recall / cost then."""
    summary = summary.assign(label=summary["method"] + " " + summary["ranking"].replace({"scores": ""}).str.strip())
    summary["cell"] = [f"{r:.1f} / {v} / {c:.0f}" for r, v, c in zip(
        summary[f"recall@{TOP_K}"], summary["verified_for_full_recall"], summary["cost_for_full_recall"], strict=True)]
    wide = summary.pivot(index="component", columns="label", values="cell")
    wide = wide[[c for c in summary["label"].drop_duplicates()]]
    return wide.reset_index()


def tiny_families() -> None:
    """Mean recall@5 and verifications to full recall over the tiny test families (printed only)."""
    from interp.models.tiny import TINY_MODELS

    frames = []
    for name in TINY_MODELS:
        model = interp.load_model(name, dtype=torch.float64)
        for pairs in (8, 1):
            data = ioi_task(model, n=pairs, seed=0)
            comparison = compare(model, data, ["attn_out", "mlp_out", "head_q", "head_k", "neuron"], METHODS, top_k=5)
            assert comparison.recall is not None
            frames.append(recall_summary(comparison.recall, 5).assign(model=name, pairs=pairs))
    table = pd.concat(frames).groupby(["pairs", "method", "ranking"])
    print(table[["recall@5", "verified_for_full_recall", "cost_for_full_recall"]].mean().to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=None, help="also store both comparisons in this runs store")
    parser.add_argument("--tiny", action="store_true", help="print the same summary over the tiny test families instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tiny:
        tiny_families()
        return
    started = time.perf_counter()
    load = os.getloadavg()[0]
    model = interp.load_model()
    task = ioi_task(model, n=PAIRS, seed=0)
    settings = {"distribution": task, "single pair": task.subset([0])}
    parts = []
    for setting, data in settings.items():
        clock = time.perf_counter()
        comparison = compare(model, data, requests(), METHODS, top_k=TOP_K, progress=lambda s: print(setting, s, flush=True))
        seconds = time.perf_counter() - clock
        if args.runs is not None:
            record(comparison, RunStore(args.runs), {"benchmark": "attribution_recall", "setting": setting}, data)
        assert comparison.recall is not None
        summary = recall_summary(comparison.recall, TOP_K)
        costs = summary.drop_duplicates("method")[["method", "method_cost"]]
        parts.append((setting, data, comparison, summary, costs, seconds))
    total = (time.perf_counter() - started) / 60
    load_after = os.getloadavg()[0]
    text = [HEADING, "",
            "Written by `python benchmarks/attribution_recall.py` (its docstring says what is run). "
            "**Loaded machine**: 1-minute load average "
            f"{load:.1f} at the start and {load_after:.1f} at the end on 2 shared cores, so wall times are not trustworthy; "
            "costs below are counted passes, not seconds.", "",
            f"- {platform.machine()}, torch {torch.__version__}, one thread; "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; whole benchmark {total:.1f} min.",
            f"- SmolLM2-135M-Instruct float32; IOI ABC, {PAIRS} pairs (distribution) and the first pair alone; "
            "denoising, logit difference; true top 10 by |exact mean effect| per component type.",
            "- Cost = method passes in forward-pass equivalents (forward 1, backward 2; one call serves every "
            "component type and is charged in full to each) + one forward per verified component.",
            "- Each cell: recall of the true top 10 after verifying 10 components / components verified until all "
            "10 are found / total cost then. `signed` ranks by |mean estimate| over pairs, `unsigned` by the "
            "mean of per-pair |estimate| (the paper's AtP score); `atp*-unsigned` is the paper's unsigned GradDrop score, "
            "`atp*` (the default) takes each drop's absolute value after averaging over pairs.", ""]
    for setting, data, comparison, summary, costs, seconds in parts:
        cost_text = ", ".join(f"{m} {c:.0f}" for m, c in zip(costs["method"], costs["method_cost"], strict=True))
        text += [f"### {setting} ({len(data)} pair{'s' if len(data) > 1 else ''}; {seconds / 60:.1f} min)", "",
                 f"Method costs (forward-pass equivalents): {cost_text}.", "", _markdown(_table(summary)), ""]
    section = "\n".join(text) + "\n"
    current = BENCHMARKS.read_text()
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    updated = pattern.sub(section + "\n", current) if pattern.search(current) else current.rstrip() + "\n\n" + section
    BENCHMARKS.write_text(updated)
    print(section)


if __name__ == "__main__":
    main()
