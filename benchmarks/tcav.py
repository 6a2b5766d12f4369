"""CAVs + TCAV at many layers: ours against captum's TCAV, same data, same model, one run.

Run ``python benchmarks/tcav.py [--layers all|0,5,10] [--random N] [--repeats R]``: it appends (or
replaces) the section "## TCAV" of BENCHMARKS.md.

What it measures. On SmolLM2-135M-Instruct (float32, CPU, one torch thread), a concept of French
prompts and ``--random`` random English sets, all of one token length (captum flattens every
position, so it only accepts prompts of one length; each random set is a seeded sample of one pool
of random English prompts, as TCAV's random sets are), and target prompts scored by the logit of
" No" at the last position. Both sides train the same mean-difference CAV on the last token of each
prompt at every requested layer (captum through a custom classifier that reads the last
position's block of its flattened activations) and score the same targets with plain gradients.

* **ours**: :func:`interp.concepts.read_layers` reads every layer in one truncated forward per batch
  for all sets, :func:`interp.concepts.sensitivities` takes every layer's gradient in one
  backward per batch, and every CAV is scored by dot products;
* **captum**: ``TCAV.interpret`` computes activations one layer at a time (one forward per concept
  per layer) and gradients one layer at a time (a forward and a backward per layer).

Parity: the largest difference of sign_count and magnitude over every (random set, layer). Speed:
wall-clock seconds of each side, run interleaved (ours, captum, ours, captum) and the ratio of
the medians; the machine's 1-minute load average is recorded, since the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from captum.concept import TCAV, Concept

import interp
from interp.concepts import Target, TokenSelector, fit_cav, read_layers, sensitivities, tcav_scores, train_cavs
from interp.concepts.data import load_concept

ROOT = Path(__file__).resolve().parents[1]
LENGTH, N_CONCEPT, N_TARGET = 8, 40, 20


def fixed_length(model, texts, n, seed, length=LENGTH):
    """``n`` distinct prompts of exactly ``length`` tokens: each text's first ``length`` tokens, decoded."""
    rng, out = random.Random(seed), []
    for text in rng.sample(list(texts), len(texts)):
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= length:
            cut = model.tokenizer.decode(ids[:length])
            if len(model.tokenizer(cut, add_special_tokens=False)["input_ids"]) == length and cut not in out:
                out.append(cut)
        if len(out) == n:
            return out
    raise SystemExit(f"not enough prompts of {length} tokens")


class LastBlock:
    """captum classifier: our mean-difference CAV fitted on the last position of captum's activations."""

    def __init__(self, d_model):
        self.d_model, self.vector, self.labels = d_model, None, None

    def train_and_eval(self, dataloader, **kwargs):
        xs, ys = zip(*dataloader)
        x, y = torch.cat(xs), torch.cat(ys)
        last = x.reshape(len(x), -1, self.d_model)[:, -1]
        self.labels = sorted(set(y.tolist()))
        fit = fit_cav(last[y == self.labels[0]], last[y == self.labels[1]], "mean_diff", seed=0)
        self.vector = torch.zeros(x.shape[1])
        self.vector[-self.d_model :] = (fit.vector / fit.vector.norm()).float()
        return {"accs": torch.tensor(fit.accuracy)}

    def weights(self):
        return torch.stack([self.vector, -self.vector])

    def classes(self):
        return self.labels


class FinalLogits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.hf = model.hf

    def forward(self, ids):
        return self.hf(input_ids=ids).logits[:, -1]


def ours(model, concept, randoms, target, answer, layers):
    select = TokenSelector("last")
    everything = concept + [p for r in randoms for p in r]
    acts = read_layers(model, everything, "resid_post", layers, select, batch_size=32)
    pos = acts[:, : len(concept)]
    sens = sensitivities(model, Target(tuple(target), torch.full((len(target),), answer), metric="logit"),
                         "resid_post", layers, select)
    out = []
    for i in range(len(randoms)):
        neg = acts[:, len(concept) * (i + 1) : len(concept) * (i + 2)]
        cavs = train_cavs(pos, neg, "resid_post", layers, "mean_diff", seed=0)
        out.append(tcav_scores(sens.derivatives(cavs)))
    return out


def theirs(model, concept, randoms, target, answer, workdir, layers):
    ids = lambda texts: model.to_tokens(texts).input_ids
    loader = lambda texts: torch.utils.data.DataLoader(ids(texts), batch_size=32)
    c = Concept(0, "french", loader(concept))
    sets = [[c, Concept(i + 1, f"random{i}", loader(r))] for i, r in enumerate(randoms)]
    tcav = TCAV(FinalLogits(model), [f"hf.model.layers.{layer}" for layer in layers], classifier=LastBlock(model.dims.d_model),
                save_path=workdir)
    scores = tcav.interpret(ids(target), experimental_sets=sets, target=answer)
    out = []
    for key in scores:
        per = scores[key]
        out.append((torch.stack([per[f"hf.model.layers.{l}"]["sign_count"][0] for l in layers]).double(),
                    torch.stack([per[f"hf.model.layers.{l}"]["magnitude"][0] for l in layers]).double()))
    return out


def answer_token(model) -> tuple[int, str]:
    """The scored token: " No", or its first piece where a tokenizer splits it."""
    ids = model.tokenizer(" No", add_special_tokens=False)["input_ids"]
    return ids[0], model.tokenizer.decode(ids[:1])


def prepare(model, n_random, length=LENGTH):
    """The concept prompts, ``n_random`` random sets, the target prompts (all ``length`` tokens) and the scored token id."""
    french = load_concept(ROOT / "data/concepts/french.jsonl").prompts
    pool = load_concept(ROOT / "data/concepts/random.jsonl").prompts
    concept = fixed_length(model, french, N_CONCEPT, 0, length)
    texts = fixed_length(model, pool, 3 * N_CONCEPT + N_TARGET, 1, length)
    target, rest = texts[:N_TARGET], texts[N_TARGET:]
    randoms = [random.Random(i).sample(rest, N_CONCEPT) for i in range(n_random)]
    return concept, randoms, target, answer_token(model)[0]


def compare(model, layers, n_random, repeats, length=LENGTH):
    """Both sides ``repeats`` times, interleaved: seconds of each run and the parity of their scores."""
    concept, randoms, target, answer = prepare(model, n_random, length)
    cuda = model.device.type == "cuda"

    def clock(fn, *args):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        value = fn(*args)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, value

    times = {"ours": [], "captum": []}
    for _ in range(repeats):
        seconds, mine = clock(ours, model, concept, randoms, target, answer, layers)
        times["ours"].append(seconds)
        with tempfile.TemporaryDirectory() as workdir:
            seconds, reference = clock(theirs, model, concept, randoms, target, answer, workdir, layers)
        times["captum"].append(seconds)
    return {
        "times": times,
        "sign_diff": max(float((a[0] - b[0]).abs().max()) for a, b in zip(mine, reference, strict=True)),
        "mag_diff": max(float((a[1] - b[1]).abs().max()) for a, b in zip(mine, reference, strict=True)),
        "mag_scale": max(float(a[1].abs().max()) for a in mine),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", default="all", help="'all' or comma-separated block indices")
    parser.add_argument("--random", type=int, default=10, help="random concept sets")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each side")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = interp.load_model()
    layers = list(range(model.dims.n_layers)) if args.layers == "all" else [int(x) for x in args.layers.split(",")]
    n_random, repeats = args.random, args.repeats
    result = compare(model, layers, n_random, repeats)
    times, sign_diff, mag_diff, mag_scale = result["times"], result["sign_diff"], result["mag_diff"], result["mag_scale"]
    load = os.getloadavg()[0]
    quiet = (f"Taken on a quiet machine (1-minute load average {load:.1f} on 2 cores at the end of the run), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}." if load < 1.5 else
             f"**Taken on a loaded, shared machine (1-minute load average {load:.1f} on 2 cores): the timings are not "
             "trustworthy; only the ratio of interleaved runs means anything.**")
    median = lambda xs: sorted(xs)[len(xs) // 2]
    ratio = median(times["captum"]) / median(times["ours"])
    section = f"""## TCAV

`python benchmarks/tcav.py`: CAVs + TCAV for one concept (French) against {n_random} random English sets of
{N_CONCEPT} prompts each, at {len(layers)} layers ({layers[0]}-{layers[-1]}) of SmolLM2-135M-Instruct
(float32, CPU, one torch thread), {N_TARGET} target prompts scored by the logit of " No"; every prompt is
{LENGTH} tokens long because captum's TCAV flattens every position and cannot take mixed lengths.
Both sides use the same mean-difference CAV on the last token (captum through a custom classifier on
the last position of its flattened activations) and plain gradients.

{quiet}

| | ours (one pass for all layers) | captum TCAV (one layer at a time) |
|---|---|---|
| seconds per run ({repeats} interleaved runs) | {", ".join(f"{t:.1f}" for t in times["ours"])} | {", ".join(f"{t:.1f}" for t in times["captum"])} |
| captum / ours (medians) | | {ratio:.1f}x |

Where the factor comes from: captum also reads every layer's activations in one forward per concept
(its `LayerActivation` takes a list of layers), so both sides pay about the same for activations;
captum then takes the gradients one layer at a time (a forward and a backward over the targets per
layer), ours takes every layer's gradient in one backward. The factor therefore grows with the
number of layers and targets, and shrinks towards 1 when reading the concept sets dominates.

Parity over every (random set, layer): largest sign_count difference {sign_diff:.3g}; largest magnitude
difference {mag_diff:.3g} (magnitudes up to {mag_scale:.3g}).
"""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    text = re.sub(r"\n## TCAV\n.*?(?=\n## |\Z)", "", text, flags=re.DOTALL).rstrip() + "\n\n" + section
    path.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
