"""Hook overhead: what capturing the whole residual stream costs, in interp, nnsight and TransformerLens.

One run loads SmolLM2-135M-Instruct once (``interp.load_model("smollm2-135m")``), builds one batch of
random token ids (seeded, no padding) and times one forward pass of that batch per call for:

1. **HF, SDPA** -- ``model.hf(...)`` under ``torch.no_grad()``, no hooks: the baseline;
2. **HF, eager** -- the same forward on a copy of the model switched to eager attention, no hooks: not a
   contender, but the reference for TransformerLens, whose bridge forces eager attention on the model
   it wraps (so that pattern hooks fire);
3. **interp** -- ``model.run_with_cache(batch, sites=...)`` for ``blocks.{L}.hook_resid_{pre,mid,post}``
   of all layers (90 tensors on SmolLM2);
4. **nnsight** -- ``nnsight.TransformersModel`` wrapped around the *same* HF module, saving in one trace
   ``model.layers[L].input`` (resid_pre), ``model.layers[L].post_attention_layernorm.input``
   (resid_mid) and ``model.layers[L].output`` (resid_post), in forward order as nnsight requires;
5. **TransformerLens** -- ``TransformerBridge.boot_transformers(..., hf_model=...)`` on a deep copy of the
   HF module (booting rewires the module tree in place: it swaps the decoder layers for bridge
   components and switches attention to eager, which would change what the other contenders run),
   then ``bridge.run_with_cache(..., names_filter=<the same 90 HookedTransformer names>)``.

Every call is under ``torch.no_grad()`` and gets the same ``input_ids``, ``attention_mask`` and
``position_ids``. Timing: warm-up rounds, then timed rounds in which every contender runs once, in an
order rotated each round (round-robin), so that load from other processes falls on all alike. The
table gives the median and interquartile range of per-call wall time and the median of per-call
process CPU time; "× baseline" is the median over rounds of each call's wall time divided by the
baseline call's *of the same round* (paired, so a burst of load that spans a round cancels), and
"CPU × baseline" the ratio of median CPU times. The machine this was written for has 2 cores shared
with other jobs, so torch runs one intra-op thread by default (``--threads``): with two, every
preemption of either thread stalls the other at the next parallel-region barrier and wall times
swing several-fold, while with one, load only slows the calls down and CPU time hardly moves. Agreement: each tool's 90 captured tensors are compared with interp's
(max absolute difference), and every contender's logits with the baseline's. Memory, in a separate
untimed pass: the peak resident-set increase during one call (RSS sampled every millisecond from
``/proc/self/statm`` by a thread, after ``gc.collect()`` and glibc's ``malloc_trim``), and the bytes the
returned captures keep alive (unique storages, so tensors that share memory count once).

The results go to the section ``## Hook overhead`` of ``BENCHMARKS.md`` at the repository root
(created if missing; other sections are left as they are) and to stdout.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/hook_overhead.py --batch 8 --seq 64 --repeats 10
"""

from __future__ import annotations

import copy
import ctypes
import gc
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import typer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from interp import Model
    from interp.tokenize import TokenBatch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # model hubs are never needed: every model is already loaded

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
SECTION = "## Hook overhead"
FILE_HEADER = "# Benchmarks\n\nMeasured numbers; each section is written by the script it names.\n"
RESID_KINDS = ("pre", "mid", "post")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MB = 2**20

BASELINE = "HF forward, SDPA, no hooks (baseline)"
HF_EAGER = "HF forward, eager attention, no hooks (TL's attention)"
INTERP = "interp `run_with_cache`"
NNSIGHT = "nnsight 0.8 trace + `.save()`"
TRANSFORMER_LENS = "TransformerLens 4 bridge `run_with_cache`"
SHORT_NAMES = {NNSIGHT: "nnsight", TRANSFORMER_LENS: "TransformerLens"}

Capture = tuple[torch.Tensor, dict[str, torch.Tensor]]
"""What one call returns: the logits and the captured tensors by interp site name (empty for no hooks)."""


@dataclass
class Contender:
    """One way of running the forward pass, and what was measured for it."""

    name: str
    run: Callable[[], Capture]
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    paired_ratios: list[float] = field(default_factory=list)
    capture_diff: float | None = None
    logits_diff: float = float("nan")
    peak_rss_mb: float = float("nan")
    retained_mb: float = float("nan")

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1e3

    @property
    def iqr_ms(self) -> float:
        q1, _, q3 = statistics.quantiles(self.seconds, n=4, method="inclusive")
        return (q3 - q1) * 1e3

    @property
    def cpu_ms(self) -> float:
        return statistics.median(self.cpu_seconds) * 1e3

    @property
    def ratio(self) -> float:
        """Median over rounds of wall time / the baseline's wall time in the same round."""
        return statistics.median(self.paired_ratios)


# --- the contenders --------------------------------------------------------------------------------


def resid_sites(n_layers: int) -> list[str]:
    """interp's (and HookedTransformer's) names of every residual-stream site, in forward order."""
    return [f"blocks.{layer}.hook_resid_{kind}" for layer in range(n_layers) for kind in RESID_KINDS]


def hf_runner(hf: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Callable[[], Capture]:
    """A plain HF forward, no hooks."""

    def run() -> Capture:
        with torch.no_grad():
            return hf(**inputs, use_cache=False).logits, {}

    return run


def interp_runner(model: Model, batch: TokenBatch, sites: Sequence[str]) -> Callable[[], Capture]:
    """``Model.run_with_cache`` on the requested sites."""

    def run() -> Capture:
        logits, cache = model.run_with_cache(batch, sites=sites)
        return logits, dict(cache.items())

    return run


def nnsight_runner(
    hf: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, inputs: dict[str, torch.Tensor]
) -> Callable[[], Capture]:
    """nnsight's ``TransformersModel`` around the already-loaded module; one trace saving 3 values a layer."""
    from nnsight import TransformersModel

    lm = TransformersModel(hf, tokenizer=tokenizer, task="text-generation")

    def run() -> Capture:
        pre: list[torch.Tensor] = []
        mid: list[torch.Tensor] = []
        post: list[torch.Tensor] = []
        with torch.no_grad(), lm.trace(**inputs, use_cache=False):
            for layer in lm.model.layers:  # values must be requested in the order the forward makes them
                pre.append(layer.input.save())
                mid.append(layer.post_attention_layernorm.input.save())
                post.append(layer.output.save())
            logits = lm.output.logits.save()
        by_kind = {"pre": pre, "mid": mid, "post": post}
        return logits, {
            f"blocks.{layer}.hook_resid_{kind}": by_kind[kind][layer] for layer in range(len(pre)) for kind in RESID_KINDS
        }

    return run


def transformer_lens_runner(
    hf: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, inputs: dict[str, torch.Tensor], sites: Sequence[str]
) -> Callable[[], Capture]:
    """A TransformerBridge booted offline from a deep copy of the loaded module; ``run_with_cache``."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        hf.config._name_or_path,  # a local path: with hf_model= the config comes from the module itself
        hf_model=copy.deepcopy(hf),
        tokenizer=copy.deepcopy(tokenizer),  # the bridge reconfigures the tokenizer it is given
        device=inputs["input_ids"].device,
    )

    def run() -> Capture:
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(
                inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                position_ids=inputs["position_ids"],
                names_filter=list(sites),
            )
        return logits, {site: cache[site] for site in sites}

    return run


# --- measuring -------------------------------------------------------------------------------------


def hook_count(module: torch.nn.Module) -> int:
    """Forward hooks and pre-hooks on a module tree, plus torch's global module hooks."""
    from torch.nn.modules import module as torch_module

    local = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
    return local + len(torch_module._global_forward_hooks) + len(torch_module._global_forward_pre_hooks)


def time_round_robin(contenders: Sequence[Contender], rounds: int, record: bool) -> None:
    """Run every contender once per round, the order rotated each round; record times if asked.

    ``contenders[0]`` is the baseline that each round's wall times are divided by.
    """
    for index in range(rounds):
        shift = index % len(contenders)
        wall: dict[str, float] = {}
        for contender in [*contenders[shift:], *contenders[:shift]]:
            start, cpu_start = time.perf_counter(), time.process_time()
            result = contender.run()
            wall[contender.name] = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            del result  # freed outside the timed region
            if record:
                contender.seconds.append(wall[contender.name])
                contender.cpu_seconds.append(cpu)
        if record:
            for contender in contenders:
                contender.paired_ratios.append(wall[contender.name] / wall[contenders[0].name])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def _release_freed_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS then also counts freed-but-kept heap
        pass


@contextmanager
def peak_rss_increase() -> Iterator[list[float]]:
    """Yield a one-element list that holds, on exit, the peak RSS increase (MB) inside the block."""
    _release_freed_memory()
    before = _rss_bytes()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = [float("nan")]
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        result[0] = (max(peak[0], _rss_bytes()) - before) / MB


def retained_mb(captures: dict[str, torch.Tensor]) -> float:
    """Memory the captured tensors keep alive, counting each storage once."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in captures.values()}
    return sum(storages.values()) / MB


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a.float() - b.float()).abs().max().item()


def check_agreement(contenders: Sequence[Contender], reference: str, baseline: str) -> float:
    """Fill each contender's max |diff| of captures vs ``reference`` and of logits vs ``baseline``.

    Returns the largest magnitude in the reference captures, the scale the differences compare with.
    """
    results = {c.name: c.run() for c in contenders}
    ref_captures = results[reference][1]
    base_logits = results[baseline][0]
    for contender in contenders:
        logits, captures = results[contender.name]
        contender.logits_diff = max_abs_diff(logits, base_logits)
        if captures:
            if captures.keys() != ref_captures.keys():
                raise ValueError(f"{contender.name} captured {sorted(captures)}, not {sorted(ref_captures)}")
            contender.capture_diff = max(max_abs_diff(captures[s], ref_captures[s]) for s in ref_captures)
    return max(t.abs().max().item() for t in ref_captures.values())


def eager_agreement(
    eager_hf: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    tokens: TokenBatch,
    sites: Sequence[str],
    tl: Contender,
    eager: Contender,
) -> tuple[float, float]:
    """TransformerLens against eager attention: (max |diff| of its captures vs interp's on the eager copy,
    max |diff| of its logits vs the hook-free eager forward).

    Wrapping the copy in ``interp.Model`` switches HF's eager attention to interp's bit-identical eager
    function (:func:`interp.attention.adopt_eager_attention`), so this runs after all timing.
    """
    from interp import Model

    eager_logits, _ = eager.run()
    tl_logits, tl_captures = tl.run()
    _, eager_cache = Model(eager_hf, tokenizer).run_with_cache(tokens, sites=sites)
    capture_diff = max(max_abs_diff(tl_captures[site], eager_cache[site]) for site in sites)
    return capture_diff, max_abs_diff(tl_logits, eager_logits)


def measure_memory(contenders: Sequence[Contender]) -> None:
    """One untimed call each: peak RSS increase and the memory its captures retain."""
    for contender in contenders:
        with peak_rss_increase() as increase:
            logits, captures = contender.run()
            contender.retained_mb = retained_mb(captures)
            del logits, captures
        contender.peak_rss_mb = increase[0]


# --- reporting -------------------------------------------------------------------------------------


def machine(load_at_start: float) -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0))
    return (
        f"{cpu}, {os.cpu_count()} logical cores ({usable} usable), torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op thread(s)), transformers {version('transformers')}, "
        f"nnsight {version('nnsight')}, transformer-lens {version('transformer-lens')}; "
        f"1-minute load average {load_at_start:.2f} before the run (other jobs on the cores)"
    )


def _fmt_diff(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def table(contenders: Sequence[Contender], missing: dict[str, str]) -> str:
    baseline_cpu = contenders[0].cpu_ms
    lines = [
        "| contender | median ms | IQR ms | × baseline | CPU ms | CPU × baseline "
        "| max abs diff of the captures vs interp | max abs diff of logits vs baseline "
        "| peak RSS Δ MB | captures retain MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in contenders:
        retained = f"{c.retained_mb:.0f}" if c.capture_diff is not None else "—"
        lines.append(
            f"| {c.name} | {c.median_ms:.0f} | {c.iqr_ms:.0f} | {c.ratio:.2f} | {c.cpu_ms:.0f} "
            f"| {c.cpu_ms / baseline_cpu:.2f} | {_fmt_diff(c.capture_diff)} | {c.logits_diff:.3g} "
            f"| {c.peak_rss_mb:.0f} | {retained} |"
        )
    for name, reason in missing.items():
        lines.append(f"| {name} | not run: {reason} | | | | | | | | |")
    return "\n".join(lines)


def reading(
    by_name: dict[str, Contender],
    n_sites: int,
    resid_scale: float,
    missing: dict[str, str],
    tl_vs_eager: tuple[float, float] | None,
) -> str:
    """One paragraph interpreting the numbers (only the contenders that ran)."""
    base = by_name[BASELINE]
    ours = by_name[INTERP]

    def ratio(name: str) -> float:
        return by_name[name].ratio

    def cpu_ratio(name: str) -> float:
        return by_name[name].cpu_ms / base.cpu_ms

    parts = [
        f"Capturing all {n_sites} residual tensors with interp's `run_with_cache` costs {ratio(INTERP):.2f}× a "
        f"plain forward in wall time ({cpu_ratio(INTERP):.2f}× in CPU time, "
        f"{ours.cpu_ms - base.cpu_ms:+.0f} ms of CPU on {base.cpu_ms:.0f} ms)."
    ]
    if NNSIGHT in by_name:
        nn = by_name[NNSIGHT]
        same = "bit for bit (max |diff| 0)" if nn.capture_diff == 0 else f"to {nn.capture_diff:.3g}"
        parts.append(
            f"nnsight's one-trace capture costs {ratio(NNSIGHT):.2f}× ({cpu_ratio(NNSIGHT):.2f}× CPU) and agrees with ours {same}, "
            f"logits to {nn.logits_diff:.3g}."
        )
    if TRANSFORMER_LENS in by_name:
        tl, eager = by_name[TRANSFORMER_LENS], by_name[HF_EAGER]
        parts.append(
            f"TransformerLens costs {ratio(TRANSFORMER_LENS):.2f}× ({cpu_ratio(TRANSFORMER_LENS):.2f}× CPU), but "
            f"its bridge forces eager attention, which alone costs {ratio(HF_EAGER):.2f}× "
            f"({cpu_ratio(HF_EAGER):.2f}× CPU; HF eager row), so its hooks proper add "
            f"{tl.cpu_ms / eager.cpu_ms:.2f}× CPU over an eager forward. Its captures differ from ours by up to "
            f"{_fmt_diff(tl.capture_diff)} (residual values reach {resid_scale:.3g} in magnitude) and its logits "
            f"by {tl.logits_diff:.3g} from the baseline's; the hook-free eager forward differs from the baseline "
            f"by {eager.logits_diff:.3g} too."
        )
        if tl_vs_eager is not None:
            parts.append(
                f"Against eager attention, TransformerLens's captures match interp's on the eager copy to "
                f"{tl_vs_eager[0]:.3g} and its logits match the eager forward's to {tl_vs_eager[1]:.3g}: the "
                "differences are eager-vs-SDPA rounding, not a disagreement about what the sites are."
            )
    parts += [f"{SHORT_NAMES[name]} did not run ({reason})." for name, reason in missing.items()]
    referencing = [c for c in (by_name.get(NNSIGHT), by_name.get(TRANSFORMER_LENS)) if c is not None]
    if referencing:
        parts.append(
            f"interp's captures keep {ours.retained_mb:.0f} MB alive (resid_post[L] and resid_pre[L+1] share one "
            "stored tensor; resid_mid, which no module materialises, is computed as resid_pre + attn_out); "
            + " and ".join(f"{SHORT_NAMES[c.name]} {c.retained_mb:.0f} MB" for c in referencing)
            + ", which hold references to the live tensors."
        )
    spread = max(c.iqr_ms / c.median_ms for c in by_name.values())
    parts.append(
        f"Wall-time spread (IQR / median) reaches {spread:.0%} on this machine; the paired wall ratios "
        "and the CPU ratios are far less exposed to other jobs, and where the two agree the ratio can be trusted "
        "to a few percent."
    )
    return " ".join(parts)


def write_section(path: Path, section: str) -> None:
    """Replace the ``## Hook overhead`` section of ``path`` (or append it), leaving the rest untouched."""
    text = path.read_text() if path.exists() else FILE_HEADER
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = section.rstrip("\n") + "\n\n"
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")


# --- CLI -------------------------------------------------------------------------------------------

app = typer.Typer(add_completion=False)


@app.command()
def main(
    batch: int = typer.Option(8, help="prompts per batch"),
    seq: int = typer.Option(64, help="tokens per prompt"),
    repeats: int = typer.Option(10, help="timed rounds (each contender runs once per round)"),
    warmup: int = typer.Option(2, help="untimed rounds first"),
    seed: int = typer.Option(0, help="seed of the random token ids"),
    threads: int = typer.Option(1, help="torch intra-op threads (1: stable timings on shared cores)"),
    write: bool = typer.Option(True, help="write the section into BENCHMARKS.md"),
) -> None:
    """Time capturing every residual-stream site with interp, nnsight and TransformerLens."""
    load_at_start = os.getloadavg()[0]
    import interp
    from interp.tokenize import TokenBatch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = interp.load_model("smollm2-135m")
    hf = model.hf
    sites = resid_sites(model.dims.n_layers)
    generator = torch.Generator().manual_seed(seed)
    tokens = TokenBatch.from_ids(torch.randint(0, model.dims.d_vocab, (batch, seq), generator=generator))
    inputs = {
        "input_ids": tokens.input_ids,
        "attention_mask": tokens.attention_mask,
        "position_ids": tokens.position_ids,
    }
    eager = copy.deepcopy(hf)
    eager.set_attn_implementation("eager")

    contenders = [
        Contender(BASELINE, hf_runner(hf, inputs)),
        Contender(HF_EAGER, hf_runner(eager, inputs)),
        Contender(INTERP, interp_runner(model, tokens, sites)),
    ]
    missing: dict[str, str] = {}
    builders: dict[str, Callable[[], Callable[[], Capture]]] = {
        NNSIGHT: lambda: nnsight_runner(hf, model.tokenizer, inputs),
        TRANSFORMER_LENS: lambda: transformer_lens_runner(hf, model.tokenizer, inputs, sites),
    }
    for name, build in builders.items():
        try:
            contenders.append(Contender(name, build()))
        except Exception as error:  # report why a tool could not be set up, and go on with the others
            missing[name] = f"{type(error).__name__}: {error}".replace("|", "/").replace("\n", " ")[:300]
            print(f"{name} could not be set up: {missing[name]}", file=sys.stderr)

    time_round_robin(contenders, warmup, record=False)
    if hook_count(hf) != 0:
        raise RuntimeError("hooks remain on the shared HF model after the warm-up: the baseline would not be plain")
    time_round_robin(contenders, repeats, record=True)
    resid_scale = check_agreement(contenders, reference=INTERP, baseline=BASELINE)
    measure_memory(contenders)
    by_name = {c.name: c for c in contenders}
    tl_vs_eager = None
    if TRANSFORMER_LENS in by_name:
        tl_vs_eager = eager_agreement(eager, model.tokenizer, tokens, sites, by_name[TRANSFORMER_LENS], by_name[HF_EAGER])
    command = " ".join(["python benchmarks/hook_overhead.py", *sys.argv[1:]])
    d = model.dims
    section = "\n".join(
        [
            SECTION,
            "",
            f"Written by `{command}`: wall time of one forward pass of SmolLM2-135M-Instruct while capturing "
            f"`resid_pre`, `resid_mid` and `resid_post` of all {d.n_layers} layers ({len(sites)} tensors), in interp, "
            "nnsight and TransformerLens, against the same forward without hooks. The script's docstring says how "
            "each tool is wired and how the numbers are taken.",
            "",
            f"- Machine: {machine(load_at_start)}.",
            f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
            f"- Settings: float32 on CPU ({d.n_layers} layers, d_model {d.d_model}); batch {batch} × {seq} random "
            f"token ids (seed {seed}, no padding), the same batch for every contender; {warmup} warm-up and "
            f"{repeats} timed rounds, contenders interleaved round-robin with the order rotated each round; "
            "median and interquartile range of per-call wall time, × baseline = median of per-round paired wall "
            "ratios, CPU = median process CPU time per call; memory from one extra untimed call each.",
            "",
            table(contenders, missing),
            "",
            reading(by_name, len(sites), resid_scale, missing, tl_vs_eager),
        ]
    )
    print(section)
    if write:
        write_section(BENCHMARKS_MD, section)
        print(f"\nwrote the section to {BENCHMARKS_MD}")
    print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    app()
