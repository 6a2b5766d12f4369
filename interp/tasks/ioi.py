"""Indirect object identification (IOI), the standard circuit-discovery task (Wang et al. 2022).

An IOI prompt introduces two people and then has one of them, the *subject* (S), do something
for the other, the *indirect object* (IO)::

    When Mary and John went to the store, John gave a drink to      -> " Mary"

A model that does the task predicts the IO, not the subject, although both names are in context;
``logit[IO] - logit[S]`` measures how well. Wang et al. found the circuit in GPT-2 small: heads that
notice S is repeated (duplicate-token, induction heads), heads that then suppress attention to S
(S-inhibition), and heads that copy the remaining name to the output (name movers).

Prompt sets here follow theirs: 15 templates, names, places and objects drawn with a seeded RNG,
and two orders of the first mention: **ABBA** (``IO and S ... S ... to``) and **BABA**
(``S and IO ... S ... to``). ``order="mixed"`` alternates them, half of the examples each, so the
IO is not always the first name mentioned. Names, places and objects are filtered to words
that are a single token (with their leading space) for the model's tokenizer, so the name slots of
every prompt are one position each and a clean and corrupted prompt align token by token. Places
and objects never differ within a pair; if a tokenizer has no single-token place or object, the
ones with the fewest tokens are used. Names must be single tokens: too few of them is an error.

Corruptions (what the corrupt run removes):

* ``"abc"`` (Wang et al.'s ABC dataset): the three name slots get three *other* distinct names,
  ``When Alice and Bob went to the store, Tom gave a drink to``. Same template and sentence
  structure, but no name is repeated and IO/S are absent, so the information "which name is the
  IO" is gone while the grammar stays: the cleanest corruption for finding the IOI circuit.
* ``"symmetric"`` (symmetric token replacement): swap IO and S everywhere. The corrupt prompt asks
  the same question with the roles reversed, so its correct answer is the clean S: the answer and
  wrong ids stay the clean IO and S, and the corrupt logit difference is about minus the clean one.
* ``"noise"`` (causal tracing, Meng et al. 2022 "ROME"): Gaussian noise on the token embeddings at
  the three name positions, with std 3 times the std of the model's token embeddings (all entries
  of the embedding output over the whole vocabulary), drawn from a generator seeded with ``seed``.
  The corrupt tokens equal the clean ones; the noise is an :class:`~interp.interventions.Add` at
  ``hook_embed`` whose vector has shape ``(example, pos, d_model)`` and is zero off the name
  positions.

Named positions (:attr:`PatchingTask.positions`), as in Wang et al.: ``S1`` and ``IO`` (the first
mentions of the subject and the indirect object), ``S1+1`` (the token after S1: ``" and"`` in BABA,
the verb in ABBA), ``and`` (between the two first mentions), ``S2`` (the repeated subject) and
``END`` (the last token, where the answer is predicted); ``PLACE`` and ``OBJECT`` (the last token of
the place and object words) when every example's template has that slot. Each example has its own
index for each name, so a sweep by named position patches every example at its own token.

Every pair is checked after tokenisation: same token length, IO once and S twice in the clean
prompt, and clean and corrupt differing only at name positions. A draw that fails is re-drawn from
the same RNG stream (never silently dropped), so the task is deterministic given the seed. The
replacement names come from a second stream, so one seed gives the same clean prompts under every
corruption (unless a re-draw was needed).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float

from interp.interventions import Add
from interp.model import Model
from interp.tasks.base import PatchingTask, TaskError
from interp.tokenize import encode

Corruption = Literal["abc", "symmetric", "noise"]
Order = Literal["mixed", "BABA", "ABBA"]
CORRUPTIONS: tuple[str, ...] = ("abc", "symmetric", "noise")
ORDERS: tuple[str, ...] = ("mixed", "BABA", "ABBA")
NOISE_SCALE = 3.0
MAX_DRAWS_PER_EXAMPLE = 20
# The most prompt pairs one IOI task may hold. The templates, names, places and objects below give
# about 1.5e8 distinct prompts, so distinctness is no bound; this one is practical: building takes
# about 1 ms per pair on a CPU (10 s here), and every patching cell then runs forwards over all of
# them, so a larger task is a mistake (``n: 100000000``) rather than a more precise average.
MAX_IOI_N = 10_000

# The templates of Wang et al.'s IOI dataset. {A} and {B} are the first mentions, {S} the repeated
# subject; each prompt ends just before the IO, the answer.
TEMPLATES: tuple[str, ...] = (
    "Then, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {S} gave a {OBJECT} to",
    "Then, {A} and {B} were working at the {PLACE}. {S} decided to give a {OBJECT} to",
    "Then, {A} and {B} were thinking about going to the {PLACE}. {S} wanted to give a {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "After {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S} decided to give the {OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "While {A} and {B} were commuting to the {PLACE}, {S} gave a {OBJECT} to",
    "After the lunch, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Afterwards, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument. Afterwards {S} said to",
    "The {PLACE} {A} and {B} went to had a {OBJECT}. {S} gave it to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {S} gave it to",
)

NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah", "Paul", "Kate",
    "Michael", "Christopher", "Jessica", "Matthew", "Ashley", "Jennifer", "Joshua", "Amanda", "Daniel", "David",
    "Robert", "Joseph", "Andrew", "Ryan", "Brandon", "Jason", "Justin", "William", "Jonathan", "Stephanie",
    "Brian", "Nicole", "Nicholas", "Anthony", "Heather", "Eric", "Elizabeth", "Adam", "Megan", "Melissa",
    "Kevin", "Steven", "Thomas", "Timothy", "Christina", "Kyle", "Rachel", "Laura", "Lauren", "Amber",
    "Richard", "Kimberly", "Jeffrey", "Amy", "Michelle", "Tiffany", "Jeremy", "Benjamin", "Mark", "Emily",
    "Aaron", "Charles", "Rebecca", "Jacob", "Stephen", "Patrick", "Sean", "Erin", "Jamie", "Kelly",
    "Samantha", "Nathan", "Sara", "Dustin", "Angela", "Tyler", "Scott", "Katherine", "Andrea", "Gregory",
    "Erica", "Travis", "Lisa", "Kenneth", "Bryan", "Lindsey", "Kristen", "Jose", "Alexander", "Jesse",
    "Katie", "Shannon", "Vanessa", "Courtney", "Christine", "Alicia", "Cody", "Allison", "Bradley", "Samuel",
    "George", "Peter", "Henry", "Emma", "Lucy", "Jack", "Harry", "Oliver", "Sophie", "Ben",
    "Sam", "Dan", "Jane", "Frank", "Martin", "Simon", "Victoria", "Linda", "Susan", "Karen",
)

PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station", "park", "library",
    "market", "beach", "church", "museum", "hotel", "bank", "cafe", "farm", "zoo", "bakery",
)

# Consonant-initial, so "a {OBJECT}" reads right.
OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack", "book", "ball",
    "letter", "bag", "gift", "key", "hat", "pen", "cake", "flower", "phone", "ticket",
)


@dataclass(frozen=True)
class IOIVocabulary:
    """The names, places and objects usable with one tokenizer."""

    names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]


@dataclass(frozen=True)
class IOIExample:
    """One drawn prompt pair, before tokenisation."""

    template: int
    order: str
    io: str
    s: str
    place: str
    obj: str
    corrupt_names: tuple[str, str, str]  # the corrupt prompt's {A}, {B}, {S}

    @property
    def clean_names(self) -> tuple[str, str, str]:
        first = (self.io, self.s) if self.order == "ABBA" else (self.s, self.io)
        return (*first, self.s)

    def prompt(self, names: tuple[str, str, str]) -> str:
        a, b, s = names
        return TEMPLATES[self.template].format(A=a, B=b, S=s, PLACE=self.place, OBJECT=self.obj)


def _token_count(model: Model, word: str) -> int:
    return len(encode(model.tokenizer, " " + word))


def _fewest_tokens(model: Model, words: tuple[str, ...]) -> tuple[str, ...]:
    """The single-token words, or, if there are none, those with the fewest tokens."""
    counts = {word: _token_count(model, word) for word in words}
    fewest = min(counts.values())
    return tuple(word for word in words if counts[word] == fewest)


def ioi_vocabulary(model: Model) -> IOIVocabulary:
    """The names (single tokens only), places and objects for ``model``'s tokenizer."""
    return IOIVocabulary(
        names=tuple(name for name in NAMES if _token_count(model, name) == 1),
        places=_fewest_tokens(model, PLACES),
        objects=_fewest_tokens(model, OBJECTS),
    )


def _draw(
    rng: random.Random,
    corrupt_rng: random.Random,
    vocab: IOIVocabulary,
    order: str,
    corruption: str,
    templates: Sequence[int] | None = None,
) -> IOIExample:
    template = rng.randrange(len(TEMPLATES)) if templates is None else rng.choice(templates)
    io, s = rng.sample(vocab.names, 2)
    place, obj = rng.choice(vocab.places), rng.choice(vocab.objects)
    first = (io, s) if order == "ABBA" else (s, io)
    if corruption == "abc":
        a, b, c = corrupt_rng.sample([name for name in vocab.names if name not in (io, s)], 3)
        corrupt_names = (a, b, c)
    elif corruption == "symmetric":
        corrupt_names = (first[1], first[0], io)
    else:
        corrupt_names = (*first, s)
    return IOIExample(template, order, io, s, place, obj, corrupt_names)


def _name_positions(model: Model, example: IOIExample) -> list[int] | None:
    """Positions (from the end, negative) of the three names, or None if the pair does not align.

    Aligned means: clean and corrupt have the same token length, the clean prompt has the IO token
    once and the S token twice, and the two prompts differ only at those positions.
    """
    clean = encode(model.tokenizer, example.prompt(example.clean_names), model.prepend_bos)
    corrupt = encode(model.tokenizer, example.prompt(example.corrupt_names), model.prepend_bos)
    if len(clean) != len(corrupt):
        return None
    io_id, s_id = model.token_id(" " + example.io), model.token_id(" " + example.s)
    io_at = [p for p, token in enumerate(clean) if token == io_id]
    s_at = [p for p, token in enumerate(clean) if token == s_id]
    if len(io_at) != 1 or len(s_at) != 2:
        return None
    names = sorted(io_at + s_at)
    if any(a != b and p not in names for p, (a, b) in enumerate(zip(clean, corrupt, strict=True))):
        return None
    return [p - len(clean) for p in names]


NAMED_POSITIONS: tuple[str, ...] = ("S1", "S1+1", "IO", "and", "S2", "END")
SLOT_POSITIONS: tuple[str, ...] = ("PLACE", "OBJECT")


def _find(tokens: list[int], word: list[int]) -> int | None:
    """The index of the last token of ``word``'s first occurrence in ``tokens``."""
    for start in range(len(tokens) - len(word) + 1):
        if tokens[start : start + len(word)] == word:
            return start + len(word) - 1
    return None


def _named_positions(model: Model, example: IOIExample, names: list[int]) -> dict[str, int]:
    """Each named position of one example, counted from the end (``-1`` = the last token)."""
    first, second, s2 = names
    s1, io = (second, first) if example.order == "ABBA" else (first, second)
    found = {"S1": s1, "S1+1": s1 + 1, "IO": io, "and": first + 1, "S2": s2, "END": -1}
    tokens = encode(model.tokenizer, example.prompt(example.clean_names), model.prepend_bos)
    for slot, word in (("PLACE", example.place), ("OBJECT", example.obj)):
        at = _find(tokens, encode(model.tokenizer, " " + word)) if "{" + slot + "}" in TEMPLATES[example.template] else None
        if at is not None:
            found[slot] = at - len(tokens)
    return found


def ioi_task(
    model: Model,
    n: int,
    seed: int = 0,
    corruption: Corruption = "abc",
    order: Order = "mixed",
    progress: Callable[[int, int], None] | None = None,
    templates: Sequence[int] | None = None,
) -> PatchingTask:
    """``n`` IOI prompt pairs for ``model``: answer = IO, wrong = S (see the module docstring).

    Args:
        model: its tokenizer decides which names, places and objects are usable.
        n: number of examples.
        seed: seeds the prompt draws (and the noise of ``corruption="noise"``).
        corruption: ``"abc"``, ``"symmetric"`` or ``"noise"``.
        order: ``"mixed"`` (alternating ABBA, BABA), ``"ABBA"`` or ``"BABA"``.
        progress: called as ``progress(done, n)`` every 500 prompts and at the end.
        templates: indices into :data:`TEMPLATES` to draw from (default: all 15). One template
            (with one ``order``) gives a task whose raw positions are the same token in every example.
    """
    if n < 1:
        raise TaskError(f"n must be at least 1, got {n}")
    if n > MAX_IOI_N:
        raise TaskError(f"n ({n:,}) is above the maximum of {MAX_IOI_N:,} IOI prompt pairs; use n <= {MAX_IOI_N}")
    if corruption not in CORRUPTIONS:
        raise TaskError(f"unknown corruption {corruption!r}; choose one of {list(CORRUPTIONS)}")
    if order not in ORDERS:
        raise TaskError(f"unknown order {order!r}; choose one of {list(ORDERS)}")
    if templates is not None:
        templates = list(templates)
        bad = [t for t in templates if not (isinstance(t, int) and 0 <= t < len(TEMPLATES))]
        if not templates or bad:
            raise TaskError(f"templates must be a non-empty list of indices 0..{len(TEMPLATES) - 1}, got {templates}")
    vocab = ioi_vocabulary(model)
    needed = 5 if corruption == "abc" else 2
    if len(vocab.names) < needed:
        raise TaskError(
            f"IOI with corruption={corruption!r} needs {needed} distinct single-token names, but only "
            f"{len(vocab.names)} of the {len(NAMES)} candidate names are single tokens for {model.name!r}'s "
            f"tokenizer ({list(vocab.names)})"
        )
    rng, corrupt_rng = random.Random(seed), random.Random(f"ioi-corrupt-{seed}")
    examples: list[IOIExample] = []
    positions: list[list[int]] = []
    draws = 0
    while len(examples) < n:
        draws += 1
        if draws > MAX_DRAWS_PER_EXAMPLE * n:
            raise TaskError(
                f"only {len(examples)} of {n} IOI prompts tokenised aligned in {draws - 1} draws for "
                f"{model.name!r}; its tokenizer does not keep the name slots one token each"
            )
        row_order = ("ABBA", "BABA")[len(examples) % 2] if order == "mixed" else order
        example = _draw(rng, corrupt_rng, vocab, row_order, corruption, templates)
        found = _name_positions(model, example)
        if found is not None:
            examples.append(example)
            positions.append(found)
            if progress is not None and (len(examples) % 500 == 0 or len(examples) == n):
                progress(len(examples), n)

    clean_prompts = [e.prompt(e.clean_names) for e in examples]
    corrupt_prompts = [e.prompt(e.corrupt_names) for e in examples]
    meta = {"task": "ioi", "n": n, "seed": seed, "corruption": corruption, "order": order, "draws": draws}
    if templates is not None:
        meta["templates"] = templates
    per_example = [_named_positions(model, e, p) for e, p in zip(examples, positions, strict=True)]
    named = [k for k in (*NAMED_POSITIONS, *SLOT_POSITIONS) if all(k in found for found in per_example)]
    columns = {
        "template": [e.template for e in examples],
        "order": [e.order for e in examples],
        "io": [e.io for e in examples],
        "s": [e.s for e in examples],
        "place": [e.place for e in examples],
        "object": [e.obj for e in examples],
        "corrupt_names": [" ".join(e.corrupt_names) for e in examples],
        "name_positions": positions,
    }
    task = PatchingTask.from_prompts(
        model,
        name=f"ioi-{corruption}",
        clean_prompts=clean_prompts,
        corrupt_prompts=corrupt_prompts,
        answers=[" " + e.io for e in examples],
        wrong=[" " + e.s for e in examples],
        meta=meta,
        examples=columns,
        positions={k: [found[k] for found in per_example] for k in named},
    )
    if corruption != "noise":
        return task
    scale = embedding_std(model)
    noise = name_noise(task.clean.shape, positions, model.dims.d_model, NOISE_SCALE * scale, seed)
    return dataclasses.replace(
        task,
        corrupt_interventions=(Add(site="hook_embed", vector=noise.to(model.device)),),
        meta={**meta, "embedding_std": scale, "noise_scale": NOISE_SCALE, "noise_std": NOISE_SCALE * scale},
    )


def embedding_std(model: Model, chunk: int = 8192) -> float:
    """Std of every entry of the token-embedding output (``hook_embed``) over the whole vocabulary."""
    embed = model.arch.embed()
    size = embed.num_embeddings

    def chunks() -> Iterator[torch.Tensor]:
        with torch.no_grad():
            for start in range(0, size, chunk):
                yield embed(torch.arange(start, min(start + chunk, size), device=model.device)).double()

    count = size * model.dims.d_model
    mean = sum(float(values.sum()) for values in chunks()) / count
    return (sum(float(((values - mean) ** 2).sum()) for values in chunks()) / (count - 1)) ** 0.5


def name_noise(
    shape: tuple[int, int], positions: list[list[int]], d_model: int, std: float, seed: int
) -> Float[torch.Tensor, "example pos d_model"]:
    """Gaussian noise of std ``std`` at each row's ``positions`` (negative, from the end), zero elsewhere."""
    batch, width = shape
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, width, d_model, generator=generator, dtype=torch.float32) * std
    mask = torch.zeros(batch, width, 1)
    for row, row_positions in enumerate(positions):
        mask[row, [width + p for p in row_positions]] = 1.0
    return noise * mask
