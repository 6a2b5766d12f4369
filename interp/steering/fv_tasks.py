"""In-context tasks for function vectors: word pairs, and the prompts built from them.

A task is a list of ``(input, output)`` word pairs that share one relation (a word and its antonym,
a country and its capital). The model is shown the relation *in context*: a prompt holds a few
demonstrations and then a query whose output it must produce, in the template of Todd et al.
(2024)::

    Q: hot
    A: cold

    Q: big
    A: small

    Q: fast
    A:

The answer follows the last ``A:`` after a space (``" slow"``); the model's prediction is scored on
the answer's **first token**, so answers that are one token are scored exactly and longer ones by
their first piece. Three kinds of prompt are built, each seeded:

* **clean** in-context prompts: ``n_shots`` demonstrations with their true outputs, then a query;
* **shuffled-label** prompts: the same, with the demonstrations' outputs permuted among them, so
  the prompt shows the format but not the relation (the corrupted run of the indirect effect);
* **zero-shot** prompts: the query alone (``"Q: fast\\nA:"``), where a function vector must supply
  the relation by itself.

Shipped tasks live in ``data/function_vectors/`` as JSONL (one ``{"input": ..., "output": ...}``
object per line): ``antonyms``, ``country_capital``, ``capitalisation``, ``english_french``.
:func:`load_icl_task` takes one of these names or a path to a file of the same form.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Int

from interp.errors import InvalidArgumentError
from interp.tokenize import encode

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "function_vectors"
SHIPPED_TASKS = ("antonyms", "country_capital", "capitalisation", "english_french")
INPUT_PREFIX, OUTPUT_PREFIX = "Q:", "A:"
INPUT_SEPARATOR, OUTPUT_SEPARATOR = "\n", "\n\n"


def format_pair(x: str, y: str | None) -> str:
    """One block of the template: ``"Q: x\\nA: y\\n\\n"``, or the open query ``"Q: x\\nA:"`` when ``y`` is None."""
    query = f"{INPUT_PREFIX} {x}{INPUT_SEPARATOR}{OUTPUT_PREFIX}"
    return query if y is None else f"{query} {y}{OUTPUT_SEPARATOR}"


def icl_prompt(demonstrations: Sequence[tuple[str, str]], query: str) -> str:
    """A prompt of demonstrations followed by the open query (zero-shot when there are none)."""
    return "".join(format_pair(x, y) for x, y in demonstrations) + format_pair(query, None)


@dataclass(frozen=True)
class ICLTask:
    """A named list of ``(input, output)`` pairs sharing one relation."""

    name: str
    pairs: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.pairs)

    def split(self, test_fraction: float = 0.3, seed: int = 42) -> tuple[ICLTask, ICLTask]:
        """(train, test): a seeded random split; demonstrations come from train, held-out queries from test."""
        if not 0 < test_fraction < 1:
            raise InvalidArgumentError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
        order = list(range(len(self.pairs)))
        random.Random(seed).shuffle(order)
        n_test = max(1, round(test_fraction * len(order)))
        if n_test >= len(order):
            raise InvalidArgumentError(
                f"task {self.name!r} has {len(order)} pairs, too few to hold out {n_test} for testing; add pairs"
            )
        test = tuple(self.pairs[i] for i in sorted(order[:n_test]))
        train = tuple(self.pairs[i] for i in sorted(order[n_test:]))
        return ICLTask(f"{self.name}/train", train), ICLTask(f"{self.name}/test", test)


def load_icl_task(name_or_path: str | Path) -> ICLTask:
    """A shipped task by name (:data:`SHIPPED_TASKS`) or a JSONL file of ``{"input", "output"}`` lines."""
    path = DATA_DIR / f"{name_or_path}.jsonl" if str(name_or_path) in SHIPPED_TASKS else Path(name_or_path)
    if not path.is_file():
        raise InvalidArgumentError(
            f"no in-context task {str(name_or_path)!r}: give one of {list(SHIPPED_TASKS)} or the path of a JSONL "
            'file with one {"input": ..., "output": ...} object per line'
        )
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidArgumentError(f"{path}:{number} is not valid JSON ({error})") from None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) and record[k] for k in ("input", "output")):
            raise InvalidArgumentError(
                f'{path}:{number} must be an object with non-empty string fields "input" and "output", got {line!r}'
            )
        pairs.append((record["input"], record["output"]))
    if len(pairs) < 2:
        raise InvalidArgumentError(f"{path} holds {len(pairs)} pairs; an in-context task needs at least 2")
    return ICLTask(path.stem, tuple(pairs))


@dataclass(frozen=True)
class ICLPrompts:
    """Prompts and what each should be answered with.

    Attributes:
        prompts: the prompt texts, each ending in the open ``"A:"``.
        queries: the query input of each prompt.
        answers: the correct output of each query (without the leading space).
        answer_ids: the first token of ``" " + answer`` for each prompt.
        answer_lengths: how many tokens ``" " + answer`` has (1: scored exactly).
    """

    prompts: list[str]
    queries: list[str]
    answers: list[str]
    answer_ids: Int[torch.Tensor, " prompt"]
    answer_lengths: list[int]

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: Sequence[int]) -> ICLPrompts:
        """The prompts ``rows``, in that order."""
        rows = list(rows)
        return ICLPrompts(
            [self.prompts[i] for i in rows],
            [self.queries[i] for i in rows],
            [self.answers[i] for i in rows],
            self.answer_ids[rows],
            [self.answer_lengths[i] for i in rows],
        )


def build_prompts(
    tokenizer,
    demonstrations: ICLTask,
    queries: Sequence[tuple[str, str]],
    n_shots: int,
    seed: int,
    shuffle_labels: bool = False,
) -> ICLPrompts:
    """One prompt per query: ``n_shots`` demonstrations drawn (seeded) from ``demonstrations`` without
    the query's own pair, optionally with their outputs permuted among them, then the query.

    ``n_shots=0`` gives zero-shot prompts. The same seed draws the same demonstrations with and
    without ``shuffle_labels``. The permutation of a shuffled prompt moves every label
    whenever the demonstrations' outputs differ (a derangement), so no demonstration keeps its own.
    """
    if n_shots < 0:
        raise InvalidArgumentError(f"n_shots must be 0 or more, got {n_shots}")
    if not queries:
        raise InvalidArgumentError("no queries to build prompts for; the task split left none")
    rng, shuffle_rng = random.Random(seed), random.Random(f"{seed}-labels")
    prompts, inputs, answers, ids, lengths = [], [], [], [], []
    for query, answer in queries:
        pool = [pair for pair in demonstrations.pairs if pair[0] != query]
        if len(pool) < n_shots:
            raise InvalidArgumentError(
                f"task {demonstrations.name!r} has {len(pool)} demonstrations for query {query!r}, fewer than "
                f"n_shots={n_shots}; lower n_shots or add pairs"
            )
        demos = rng.sample(pool, n_shots)
        if shuffle_labels and n_shots > 1:
            demos = _shuffled(demos, shuffle_rng)
        prompts.append(icl_prompt(demos, query))
        tokens = encode(tokenizer, " " + answer)
        inputs.append(query)
        answers.append(answer)
        ids.append(tokens[0])
        lengths.append(len(tokens))
    return ICLPrompts(prompts, inputs, answers, torch.tensor(ids, dtype=torch.long), lengths)


def _shuffled(demos: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
    """The demonstrations with their outputs permuted so that none keeps its own (when possible)."""
    outputs = [y for _, y in demos]
    for _ in range(100):
        permuted = rng.sample(outputs, len(outputs))
        if all(a != b for a, b in zip(permuted, outputs, strict=True)):
            break
    return [(x, y) for (x, _), y in zip(demos, permuted, strict=True)]


def single_token_fraction(tokenizer, task: ICLTask) -> float:
    """The fraction of the task's answers (with their leading space) that are one token."""
    return sum(len(encode(tokenizer, " " + y)) == 1 for _, y in task.pairs) / len(task.pairs)
