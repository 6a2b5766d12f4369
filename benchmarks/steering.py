"""Steering benchmark: extraction and generation speed against steering-vectors and repeng, and the
strength-behaviour-KL table of the shipped sentiment example, written to ``## Steering`` of BENCHMARKS.md.

Side by side in one process, on the default model (SmolLM2-135M, float32, CPU):

* **extraction**: a vector at every layer from the first ``PAIRS`` pairs of
  ``data/steering/sentiment.jsonl``: ours (:func:`interp.steering.build_vectors`, mean difference and
  PCA from one pass), steering-vectors' ``train_steering_vector`` (mean) and repeng's
  ``read_representations`` (PCA of differences), each with its own batching defaults;
* **generation**: greedy tokens per second for one prompt: our plain ``generate``, ours under one and
  under three vectors, Hugging Face ``generate`` plain, under a steering-vectors hook and under a
  repeng ``ControlModel``. Contenders are interleaved over ``ROUNDS`` rounds and the fastest round
  of each is kept;
* **effect vs KL**: :func:`interp.steering.strength_sweep` of the mean-difference vector.

Run: ``python benchmarks/steering.py``.
"""

from __future__ import annotations

import os
import platform
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy
import torch

if not hasattr(numpy, "float_"):
    numpy.float_ = numpy.float64  # repeng 0.4 still names numpy.float_, an alias numpy 2 removed

import interp
from interp.steering import TokenScore, build_vectors, load_contrast, steer, strength_sweep
from interp.tokenize import pad_id

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADING = "## Steering"
PAIRS = 40
NEW_TOKENS = 24
ROUNDS = 5
PROMPT = "I think the weather today is"
SWEEP_PROMPTS = ["I think the weather today is", "My neighbour told me that the film", "Yesterday I went to the market and it was"]
POSITIVE = [" good", " great", " wonderful", " amazing", " excellent", " beautiful", " perfect", " happy", " nice", " best"]
NEGATIVE = [" bad", " terrible", " awful", " horrible", " boring", " worst", " poor", " sad", " disappointing", " ugly"]


def timed(fn) -> tuple[float, object]:
    """Seconds of ``fn()`` (waiting for queued CUDA work on both sides) and its value."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def steering_layers(n_layers: int) -> tuple[int, list[int]]:
    """The layer of the one-vector contender and the layers of the three-vector one: 15 and 9, 15, 21 of 30."""
    middle, step = n_layers // 2, max(1, n_layers // 5)
    return middle, sorted({min(max(layer, 0), n_layers - 1) for layer in (middle - step, middle, middle + step)})


def extraction(model: interp.Model) -> list[tuple[str, float]]:
    import repeng
    from repeng.extract import read_representations
    from steering_vectors import train_steering_vector

    contrast = load_contrast(ROOT / "data/steering/sentiment.jsonl").take(PAIRS)
    pairs = [(p.positive, p.negative) for p in contrast.pairs]
    layers = list(range(model.dims.n_layers))
    rows = [("ours: mean + PCA, one pass", timed(lambda: build_vectors(model, contrast, methods=("mean_diff", "pca_diff")))[0])]
    rows.append(("steering-vectors: mean (batch_size=1)", timed(lambda: train_steering_vector(model.hf, model.tokenizer, pairs, layers=layers))[0]))
    entries = [repeng.DatasetEntry(positive=p, negative=n) for p, n in pairs]
    rows.append(("repeng: PCA (batch_size=32)", timed(lambda: read_representations(model.hf, model.tokenizer, entries, hidden_layers=layers[:-1]))[0]))
    return rows


def generation(model: interp.Model, vectors, prompts: list[str] | None = None, rounds: int = ROUNDS) -> list[tuple[str, float]]:
    """Greedy tokens/s of each contender over ``prompts`` (one batch; ``[PROMPT]`` by default), fastest of ``rounds``.

    ``vectors`` holds the layers of :func:`steering_layers`; tokens/s counts every row's new tokens.
    An anchor whose package does not import is not run: its rate is NaN.
    """
    from interp.steering import to_steering_vector

    try:
        import repeng
    except ImportError:
        repeng = None
    prompts = prompts or [PROMPT]
    layer, layers = steering_layers(model.dims.n_layers)
    one = steer(vectors, 0.25, "norm", layers=[layer])
    three = steer(vectors, 0.1, "norm", layers=layers)
    try:
        sv = to_steering_vector(vectors.select([layer]))
    except ImportError:
        sv = None
    text = prompts[0] if len(prompts) == 1 else prompts
    batch = model.to_tokens(prompts)  # the tokens ours generates from (left-padded, BOS as the model wants)
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    hf_kwargs = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False,
                 "pad_token_id": pad_id(model.tokenizer)}
    raw = vectors.raw_strength(layer, 0.25, "norm")

    def repeng_generate() -> None:
        control = repeng.ControlModel(model.hf, [layer])
        try:
            control.set_control(repeng.ControlVector(model_type="llama", directions={layer: vectors.vector(layer).cpu().numpy()}), raw)
            control.generate(**inputs, **hf_kwargs)
        finally:
            control.unwrap()

    def sv_generate() -> None:
        with sv.apply(model.hf, multiplier=raw):
            model.hf.generate(**inputs, **hf_kwargs)

    contenders = {
        "ours: generate, no vector": lambda: model.generate(text, max_new_tokens=NEW_TOKENS),
        "ours: 1 vector": lambda: model.generate(text, one, max_new_tokens=NEW_TOKENS),
        f"ours: {len(layers)} vectors": lambda: model.generate(text, three, max_new_tokens=NEW_TOKENS),
        "HF generate, no vector": lambda: model.hf.generate(**inputs, **hf_kwargs),
        "steering-vectors: 1 vector (HF generate)": sv_generate if sv is not None else None,
        "repeng: 1 vector (HF generate)": repeng_generate if repeng is not None else None,
    }
    best = {name: float("inf") if fn is not None else float("nan") for name, fn in contenders.items()}
    with torch.no_grad():
        for _ in range(rounds):
            for name, fn in contenders.items():
                if fn is not None:
                    best[name] = min(best[name], timed(fn)[0])
    return [(name, len(prompts) * NEW_TOKENS / seconds) for name, seconds in best.items()]


def _load_note(load: float) -> str:
    """What the load average says about how far the timings can be trusted."""
    if load > (os.cpu_count() or 1) + 0.5:
        return ("**The machine was shared and heavily loaded while these figures were taken: they are not "
                "trustworthy timings.** Contenders ran interleaved in one process, so only their ratios can be read.")
    return ("The load average stayed within the core count (the benchmark itself): a quiet machine. Contenders "
            "ran interleaved in one process.")


def section(facts: dict, extract_rows, gen_rows, sweep) -> str:
    lines = [
        HEADING,
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"{facts['date']}; {torch.get_num_threads()} torch threads; highest 1-minute load average seen "
        f"{facts['load']:.1f}. " + _load_note(facts["load"]) + " Model: SmolLM2-135M, float32. Produced by "
        "`benchmarks/steering.py`.",
        "",
        f"### Extraction: a vector at every one of the {facts['layers']} layers from {PAIRS} sentiment pairs",
        "",
        "| contender | seconds | x ours |",
        "|---|---:|---:|",
    ]
    ours = extract_rows[0][1]
    lines += [f"| {name} | {sec:.2f} | {sec / ours:.2f} |" for name, sec in extract_rows]
    lines += [
        "",
        "Ours reads every token of every text once (the median token norm needs them) and builds both the mean "
        "difference and the PCA direction from that pass; repeng's last hidden state is the final norm's output, "
        "so it ran every layer but the last.",
        "",
        f"### Generation: greedy tokens per second, one prompt, {NEW_TOKENS} new tokens, fastest of {ROUNDS} interleaved rounds",
        "",
        "| contender | tokens/s | vs our plain generate |",
        "|---|---:|---:|",
    ]
    plain = gen_rows[0][1]
    lines += [f"| {name} | {rate:.1f} | {rate / plain:.2f} |" for name, rate in gen_rows]
    lines += [
        "",
        "Our steered generation keeps steering generated tokens at absolute positions through the KV cache; the "
        "anchors steer every position (their per-forward position indices do not survive a cache).",
        "",
        "### Effect vs KL: the shipped sentiment vector (mean difference, 120 pairs, last token, resid_post)",
        "",
        f"Prompts: {len(SWEEP_PROMPTS)} neutral openings, 8 greedy tokens, scope all. Strength is a fraction of the "
        "layer's median token norm. Score: log-odds of ten positive against ten negative words in the steered "
        "next-token distribution, per step; KL(steered || unsteered) per step; perplexity of the steered text "
        "under the unsteered model.",
        "",
        "| layer | strength | mean KL | KL first token | entropy | perplexity | score | score change |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sweep.itertuples():
        lines.append(
            f"| {row.layer} | {row.strength:g} | {row.kl:.3f} | {row.kl_first:.3f} | {row.entropy:.2f} | "
            f"{row.perplexity:.1f} | {row.score:.2f} | {row.score_delta:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def write(text: str) -> None:
    current = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    updated = pattern.sub(lambda _: text + "\n", current) if pattern.search(current) else current.rstrip("\n") + "\n\n" + text
    BENCHMARKS.write_text(updated)


def main() -> None:
    model = interp.load_model()
    facts = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "load": os.getloadavg()[0], "layers": model.dims.n_layers}
    extract_rows = extraction(model)
    print(extract_rows, flush=True)
    facts["load"] = max(facts["load"], os.getloadavg()[0])
    vectors = build_vectors(model, load_contrast(ROOT / "data/steering/sentiment.jsonl"),
                            layers=steering_layers(model.dims.n_layers)[1])["mean_diff"]
    gen_rows = generation(model, vectors)
    print(gen_rows, flush=True)
    facts["load"] = max(facts["load"], os.getloadavg()[0])
    score = TokenScore.from_words(model, POSITIVE, NEGATIVE)
    sweep = strength_sweep(model, vectors, SWEEP_PROMPTS, [-0.25, 0.0, 0.125, 0.25, 0.5], max_new_tokens=8, score=score).table
    facts["load"] = max(facts["load"], os.getloadavg()[0])
    text = section(facts, extract_rows, gen_rows, sweep)
    write(text)
    print(text)


if __name__ == "__main__":
    main()
