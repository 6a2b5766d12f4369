"""Attribution methods against exact activation patching on IOI with the default model.

Run ``python benchmarks/attribution_report.py``: it writes the section "## Attribution vs exact
patching" of BENCHMARKS.md (replacing an older copy of that section, leaving the others alone).

What it measures. On 32 IOI prompt pairs (ABC corruption, logit difference, denoising) with
SmolLM2-135M-Instruct (float32, CPU), it runs the exact patching sweep of each component type with
the patching engine and estimates the same cells with AtP, AtP* (QK fix + GradDrop; its signed
estimate is AtP + QK fix), RelP with the RelP fork's rules (LN-, Identity- and Half-rule, ordinary
attention gradient), RelP + QK fix, the best rule subset found (Identity-rule alone, with the QK
fix), and integrated gradients (EAP-IG inputs path, 10 midpoint steps); then a RelP rule ablation
(each rule alone, pairs, CP-LRP and AttnLRP attention). Agreement is
:func:`interp.attribution.agreement` over the cells' mean effects: Pearson r, Spearman r, recall of
the exact top 10, and sign agreement on them.

Subsets. Exact sweeps cost one (partial) forward per cell, and this CPU is shared, so the sweeps are
restricted: every fifth layer (0, 5, ..., 25) for the residual stream, attention and MLP outputs by
(layer, position) and for heads (z, q, k) by (layer, head); 128 seeded random neurons of layer 25.
Attribution methods compute every cell in their few passes; only the comparison is restricted.
Torch runs on one thread: on this machine two contended threads are several times slower.
"""

from __future__ import annotations

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
import transformers  # noqa: E402

import interp  # noqa: E402
from interp.attribution import MethodOptions, RelPRules, SweepRequest, compare  # noqa: E402
from interp.tasks import ioi_task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADING = "## Attribution vs exact patching"
PAIRS = 32
LAYERS = list(range(0, 30, 5))
NEURON_LAYER = 25
NEURONS = sorted(random.Random(0).sample(range(1536), 128))
METHODS = ["atp", "atp*", "relp", "relp+qk", "ig"]
IDENTITY_ONLY = RelPRules(norm=False, gated_product=False)
# label -> (method, rules): the best rule subset with the QK fix in the main table, then the ablation
VARIANTS = {
    "relp-identity+qk": ("relp+qk", IDENTITY_ONLY),
    "identity only": ("relp", IDENTITY_ONLY),
    "half only": ("relp", RelPRules(norm=False, activation=False)),
    "LN only": ("relp", RelPRules(activation=False, gated_product=False)),
    "identity + half": ("relp", RelPRules(norm=False)),
    "fork rules + CP attention": ("relp", RelPRules(attention="cp")),
    "fork rules + AttnLRP attention": ("relp", RelPRules(attention="attnlrp")),
}
MAIN = [*METHODS[:4], "relp-identity+qk", "ig"]
ABLATION = ["atp", "relp", "identity only", "half only", "LN only", "identity + half", "fork rules + CP attention",
            "fork rules + AttnLRP attention"]
COMPONENTS = {
    "resid_pre": "residual stream (layer x pos)",
    "attn_out": "attention output (layer x pos)",
    "mlp_out": "MLP output (layer x pos)",
    "head_z": "head output z (layer x head)",
    "head_q": "head query (layer x head)",
    "head_k": "head key (layer x KV head)",
    "neuron": f"MLP neurons, layer {NEURON_LAYER}",
}


def requests() -> list[SweepRequest]:
    return [
        SweepRequest("resid_pre", layers=LAYERS),
        SweepRequest("attn_out", layers=LAYERS),
        SweepRequest("mlp_out", layers=LAYERS),
        SweepRequest("head_z", layers=LAYERS),
        SweepRequest("head_q", layers=LAYERS),
        SweepRequest("head_k", layers=LAYERS),
        SweepRequest("neuron", layers=[NEURON_LAYER], neurons=NEURONS),
    ]


def log(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)


def run() -> tuple[pd.DataFrame, dict[str, object]]:
    started = time.perf_counter()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = interp.load_model("smollm2-135m")
    task = ioi_task(model, n=PAIRS, seed=0, corruption="abc")
    log(f"model and {len(task)} pairs {tuple(task.clean.shape)} ready", started)
    main = compare(
        model, task, requests(), METHODS, options=MethodOptions(ig_steps=10), progress=lambda s: log(s, started)
    )
    tables = [main.table]
    for label, (method, rules) in VARIANTS.items():
        options = MethodOptions(relp_rules=rules)
        variant = compare(model, task, requests(), [method], options=options, exact=main.exact)
        tables.append(variant.table.assign(method=label))
        log(label, started)
    exact = main.exact["resid_pre"]
    facts = {
        "clean": float(exact.clean.mean()),
        "corrupt": float(exact.corrupt.mean()),
        "shape": tuple(task.clean.shape),
        "total_seconds": time.perf_counter() - started,
    }
    return pd.concat(tables, ignore_index=True), facts


def _r(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.3f}"


def _table(table: pd.DataFrame, methods: list[str], cell: str = "pearson") -> list[str]:
    lines = ["| component (cells) | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for component, label in COMPONENTS.items():
        rows = table[table["component"] == component].set_index("method")
        cells = int(rows["cells"].iloc[0])
        if cell == "pearson":
            values = [_r(rows.loc[m, "pearson"]) for m in methods]
        else:
            values = [
                f"{_r(rows.loc[m, 'spearman'])} / {rows.loc[m, 'recall']:.1f} / {rows.loc[m, 'sign_agreement']:.1f}"
                for m in methods
            ]
        lines.append(f"| {label} ({cells}) | " + " | ".join(values) + " |")
    return lines


def section(table: pd.DataFrame, facts: dict[str, object]) -> str:
    shape = facts["shape"]
    lines = [
        HEADING,
        "",
        "Written by `python benchmarks/attribution_report.py` (its docstring says what is run and how). Each "
        "approximation estimates the same cells as an exact activation-patching sweep of the engine; r is the "
        "Pearson correlation over cells of the mean effect on the logit difference.",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} logical cores shared with other jobs, torch "
        f"{torch.__version__} on 1 thread, transformers {transformers.__version__}.",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; whole report {facts['total_seconds'] / 60:.1f} min.",
        f"- Task: {PAIRS} IOI pairs, ABC corruption, batch {shape[0]} x {shape[1]} tokens (left-padded); logit "
        f"difference clean {facts['clean']:.2f}, corrupt {facts['corrupt']:.2f}; denoising (clean activations into "
        "the corrupt run, gradients on the corrupt run). Model: SmolLM2-135M-Instruct, float32.",
        f"- Subsets of the exact sweeps (to fit the CPU budget): layers {', '.join(map(str, LAYERS))} for the "
        f"(layer x position) and head sweeps, all positions and heads; {len(NEURONS)} seeded random neurons of "
        f"layer {NEURON_LAYER}, each patched at all positions.",
        "- Methods: `atp`; `atp*` = QK fix + GradDrop (its signed estimate, AtP + QK fix, is what is correlated; "
        "the GradDrop magnitude ranks the top 10); `relp` = the RelP fork's rules (LN-, Identity-, Half-rule, "
        "ordinary attention gradient); `relp+qk` = the same with AtP*'s exact softmax for queries and keys; "
        "`relp-identity+qk` = the Identity-rule alone, with the QK fix; `ig` = EAP-IG inputs path, 10 midpoint steps.",
        "",
        "Pearson r against exact patching:",
        "",
        *_table(table, MAIN),
        "",
        "Spearman r / recall of the exact top 10 / sign agreement on them:",
        "",
        *_table(table, MAIN, cell="ranks"),
        "",
        "RelP rule ablation (Pearson r; no QK fix):",
        "",
        *_table(table, ABLATION),
        "",
        "(—: undefined; CP attention holds the pattern constant, so queries and keys get no coefficient and "
        "every estimate is 0.)",
        "",
        "Cost. One call of a method serves all seven component types (every cell of every layer, not only the "
        "subsets), so its passes and wall time are per call. The exact sweeps' forwards are partial forwards of "
        "the engine (starting at the patched block and position, many cells per forward):",
        "",
        "| method | forward passes | backward passes | seconds |",
        "|---|---:|---:|---:|",
    ]
    first = table[table["component"] == "resid_pre"].set_index("method")
    for method in MAIN:
        row = first.loc[method]
        passes = f"{int(row['forward_passes'])} | {row['backward_passes']:.1f}"
        lines.append(f"| {method} | {passes} | {row['seconds']:.0f} |")
    lines += ["", "| exact sweep | cells | forwards | seconds |", "|---|---:|---:|---:|"]
    for component in COMPONENTS:
        row = table[(table["component"] == component) & (table["method"] == "atp")].iloc[0]
        numbers = f"{int(row['cells'])} | {int(row['exact_forward_passes'])} | {row['exact_seconds']:.0f}"
        lines.append(f"| {component} | {numbers} |")
    lines += ["", *discussion(table), ""]
    return "\n".join(lines)


def _pearson(table: pd.DataFrame, method: str) -> pd.Series:
    return table[table["method"] == method].set_index("component")["pearson"]


def discussion(table: pd.DataFrame) -> list[str]:
    """Where RelP reaches r >= 0.9 and where not, stated from the numbers, and why."""
    atp, relp, best = _pearson(table, "atp"), _pearson(table, "relp"), _pearson(table, "relp-identity+qk")
    reached = [c for c in COMPONENTS if relp[c] >= 0.9]
    short = [c for c in COMPONENTS if not relp[c] >= 0.9]
    best_short = [c for c in COMPONENTS if not best[c] >= 0.9]
    return [
        "Findings:",
        "",
        f"- RelP with the fork's rules reaches r >= 0.9 on {', '.join(reached) or 'no component type'} and falls "
        "short on " + ", ".join(f"{c} ({_r(relp[c])})" for c in short) + ". "
        "The best variant here, the Identity-rule alone with the QK fix, falls short on "
        + (", ".join(f"{c} ({_r(best[c])})" for c in best_short) or "nothing") + ".",
        "- Why: on this model and task plain AtP is already close to exact "
        f"(r = {', '.join(f'{c} {_r(atp[c])}' for c in COMPONENTS)}), i.e. the patches act almost linearly, so "
        "the best coefficient is the true local gradient. Each LRP rule replaces a local derivative by a "
        "relevance-conserving one, and the ablation shows each one costing agreement here: the LN-rule (dropping "
        "the norms' dependence on their own scale) most on the residual stream and the heads, the Half-rule "
        "(halving the gradient through every later gated MLP) on the neurons. RelP's advantage in its paper is on "
        "GPT-2 MLP outputs, where AtP collapses (r = 0.006 on GPT-2 Large): a regime this model does not show on "
        "IOI (AtP r > 0.98 on MLP outputs), so there is nothing for the rules to repair.",
        "- Queries and keys: RelP keeps the ordinary softmax gradient, so it inherits AtP's saturation false "
        "negatives; the QK fix (exact softmax, RelP coefficient at the pattern) raises RelP's r on q and k. AtP* "
        "gets the highest r on q and k.",
        "- GradDrop changes only the ranking (unsigned magnitudes); its top-10 recall is below AtP's signed ranking "
        "on most types, consistent with little direct/indirect cancellation in this setting.",
        "- IG on the inputs path (EAP-IG) is complete at the embeddings (tested) but agrees poorly, even "
        "negatively, with single-node patching of inner components: its path moves every upstream activation at "
        "once through blended name embeddings, far from the states that patching one node visits. The "
        "activations path (interpolating each swept site; tested to converge to exact patching of a cell) costs "
        "steps x (F + B) per layer and site, beyond this CPU budget.",
    ]


def write(text: str) -> None:
    current = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    BENCHMARKS.write_text(updated)


def main() -> None:
    table, facts = run()
    table.to_csv(Path(os.environ.get("ATTRIBUTION_REPORT_CSV", "/tmp/attribution_report.csv")), index=False)
    text = section(table, facts)
    write(text)
    print(text)


if __name__ == "__main__":
    main()
