"""``PatchingTask``: the clean/corrupt prompt pairs a patching experiment runs on.

Activation patching compares two runs of the model position by position: a *clean* prompt, on
which the model shows the behaviour (``"... John gave a drink to"`` -> ``" Mary"``), and a
*corrupt* prompt that differs only in what the behaviour depends on, so the behaviour is gone.
A task holds both, already tokenised so that pair ``i`` has the same length and the same padding
(left padding: the last real token is at position ``-1`` in every row), together with the two
tokens the metric compares: the *answer* (the correct next token on the clean prompt) and the
*wrong* token (the contrasting one, e.g. the other name). Both are single tokens, since metrics
read one logit each.

Some corruptions are not a different prompt but a change to the forward pass, e.g. Gaussian noise
on some token embeddings (Meng et al. 2022). Such a task has ``corrupt`` equal to ``clean`` and
carries the change as ``corrupt_interventions``, which the patching engine applies to every corrupt
run. Interventions whose tensors have a leading ``(example, pos)`` shape follow the task through
:meth:`PatchingTask.subset` and :meth:`PatchingTask.to`.

``meta`` describes the task as a whole (seed, corruption, ...); ``examples`` holds per-example
columns (the answer and wrong tokens as text, template ids, names, ...), which :meth:`to_frame`
lays out one row per example.

**Named positions.** A raw position (column ``p`` of the padded batch) is a different token in each
example as soon as the prompts differ in length or layout (IOI mixes 15 templates), so a patching
effect averaged at column ``p`` averages unrelated tokens. ``positions`` names the tokens that
mean the same thing in every example (IOI: ``S1``, ``S1+1``, ``IO``, ``S2``, ``END``, ...) and gives,
per name, each example's own index, counted from the end (``-1`` = the last token) so that it
survives re-padding. Sweeps by named position patch each example at its own index for the name
(:func:`named_columns`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Int

from interp.errors import InterpError
from interp.interventions import Intervention
from interp.model import Model
from interp.tokenize import TokenBatch

Rows = slice | Sequence[int] | torch.Tensor


class TaskError(InterpError, ValueError):
    """A task that cannot be built as asked (bad data line, too few words, inconsistent fields)."""


@dataclass(frozen=True)
class PatchingTask:
    """Clean/corrupt prompt pairs, tokenised alike, with the answer and wrong token of each.

    Attributes:
        name: a short label (``"ioi-abc"``, a JSONL file's stem).
        clean_prompts, corrupt_prompts: the prompt texts, pair ``i`` at index ``i``.
        clean, corrupt: the token batches, same shape and padding (``corrupt`` equals ``clean``
            when the corruption is an intervention).
        answers: the correct next-token id of each example.
        wrong: the contrasting next-token id of each example.
        corrupt_interventions: applied to every corrupt run (e.g. embedding noise).
        meta: task-level description (seed, corruption, ...), JSON-able.
        examples: per-example columns (each a list of length ``len(task)``), shown by ``to_frame``.
    """

    name: str
    clean_prompts: list[str]
    corrupt_prompts: list[str]
    clean: TokenBatch
    corrupt: TokenBatch
    answers: Int[torch.Tensor, " example"]
    wrong: Int[torch.Tensor, " example"]
    corrupt_interventions: tuple[Intervention, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, list[Any]] = field(default_factory=dict)
    positions: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.clean_prompts)
        if n == 0:
            raise TaskError(f"task {self.name!r} has no examples")
        sizes = {
            "corrupt_prompts": len(self.corrupt_prompts),
            "clean batch": self.clean.shape[0],
            "corrupt batch": self.corrupt.shape[0],
            "answers": self.answers.shape[0],
            "wrong": self.wrong.shape[0],
            **{f"examples[{key!r}]": len(column) for key, column in self.examples.items()},
            **{f"positions[{key!r}]": len(column) for key, column in self.positions.items()},
        }
        bad = {key: size for key, size in sizes.items() if size != n}
        if bad:
            raise TaskError(f"task {self.name!r} has {n} clean prompts but {bad}")
        if self.clean.shape != self.corrupt.shape:
            raise TaskError(
                f"task {self.name!r}: clean batch {self.clean.shape} and corrupt batch {self.corrupt.shape} differ "
                "in shape; tokenise them with Model.tokenize_pairs"
            )
        if not torch.equal(self.clean.attention_mask.cpu(), self.corrupt.attention_mask.cpu()):
            raise TaskError(f"task {self.name!r}: clean and corrupt prompts are not padded alike")
        lengths = self.clean.lengths.tolist()
        for key, column in self.positions.items():
            bad = [i for i, (p, length) in enumerate(zip(column, lengths, strict=True)) if not -length <= p <= -1]
            if bad:
                raise TaskError(
                    f"task {self.name!r}: named position {key!r} is outside the prompt in examples {bad[:5]}; "
                    "named positions count from the end (-1 = the last token, -length = the first)"
                )

    @classmethod
    def from_prompts(
        cls,
        model: Model,
        name: str,
        clean_prompts: Sequence[str],
        corrupt_prompts: Sequence[str],
        answers: Sequence[str],
        wrong: Sequence[str],
        corrupt_interventions: Sequence[Intervention] = (),
        meta: dict[str, Any] | None = None,
        examples: dict[str, list[Any]] | None = None,
        positions: dict[str, list[int]] | None = None,
    ) -> PatchingTask:
        """Tokenise prompt pairs and single-token answer/wrong texts (e.g. ``" Mary"``) for ``model``.

        Raises :class:`~interp.errors.TokenizationError` if a pair's token lengths differ or an
        answer is not one token.
        """
        clean, corrupt = model.tokenize_pairs(list(clean_prompts), list(corrupt_prompts))
        device = model.device
        return cls(
            name=name,
            clean_prompts=list(clean_prompts),
            corrupt_prompts=list(corrupt_prompts),
            clean=clean,
            corrupt=corrupt,
            answers=torch.tensor([model.token_id(text) for text in answers], dtype=torch.long, device=device),
            wrong=torch.tensor([model.token_id(text) for text in wrong], dtype=torch.long, device=device),
            corrupt_interventions=tuple(corrupt_interventions),
            meta=dict(meta or {}),
            examples={"answer": list(answers), "wrong": list(wrong), **(examples or {})},
            positions={key: list(column) for key, column in (positions or {}).items()},
        )

    def __len__(self) -> int:
        return len(self.clean_prompts)

    @property
    def device(self) -> torch.device:
        return self.answers.device

    def to(self, device: torch.device | str) -> PatchingTask:
        """The same task with every tensor (batches, ids, intervention tensors) on ``device``."""
        return dataclasses.replace(
            self,
            clean=self.clean.to(device),
            corrupt=self.corrupt.to(device),
            answers=self.answers.to(device),
            wrong=self.wrong.to(device),
            corrupt_interventions=tuple(
                _replace_tensors(intervention, lambda tensor: tensor.to(device))
                for intervention in self.corrupt_interventions
            ),
        )

    def subset(self, rows: Rows) -> PatchingTask:
        """The examples ``rows`` (a slice, indices or a boolean/index tensor), in that order.

        Padding columns that no selected row needs are dropped (as ``TokenBatch[rows]`` does);
        intervention tensors shaped ``(example, pos, ...)`` are cut to the same rows and columns,
        ``rows`` selectors are renumbered and non-negative ``positions`` shifted.
        """
        index = torch.arange(len(self))[rows if not isinstance(rows, torch.Tensor) else rows.cpu()]
        picked = [int(i) for i in index.reshape(-1)]
        if not picked:
            raise TaskError(f"subset of task {self.name!r} selects no examples")
        clean, corrupt = self.clean[picked], self.corrupt[picked]
        old_width, new_width = self.clean.shape[1], clean.shape[1]
        return dataclasses.replace(
            self,
            clean_prompts=[self.clean_prompts[i] for i in picked],
            corrupt_prompts=[self.corrupt_prompts[i] for i in picked],
            clean=clean,
            corrupt=corrupt,
            answers=self.answers[picked],
            wrong=self.wrong[picked],
            corrupt_interventions=tuple(
                _subset_intervention(intervention, picked, len(self), old_width, new_width)
                for intervention in self.corrupt_interventions
            ),
            examples={key: [column[i] for i in picked] for key, column in self.examples.items()},
            positions={key: [column[i] for i in picked] for key, column in self.positions.items()},
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per example: the prompts, the answer/wrong ids and texts, and the example columns."""
        frame = pd.DataFrame(
            {
                "example": range(len(self)),
                "clean": self.clean_prompts,
                "corrupt": self.corrupt_prompts,
                "answer_id": self.answers.tolist(),
                "wrong_id": self.wrong.tolist(),
            }
        )
        for key, column in self.examples.items():
            frame[key] = column
        lengths = self.clean.lengths.tolist()
        for key, column in self.positions.items():  # counted from each prompt's first token
            frame[f"pos {key}"] = [length + p for p, length in zip(column, lengths, strict=True)]
        return frame

    @property
    def aligned(self) -> bool:
        """Whether every example has the same token length, so raw position ``p`` is one slot in all of them.

        (A task of one template is aligned; IOI's mixed templates are not.) Named positions, where
        given, must also agree, so that a raw position and a name pick the same token everywhere.
        """
        lengths = self.clean.lengths
        return bool((lengths == lengths[0]).all()) and all(len(set(column)) == 1 for column in self.positions.values())


def _replace_tensors(intervention: Intervention, change: Callable[[torch.Tensor], torch.Tensor]) -> Intervention:
    """The intervention with ``change`` applied to each of its tensor fields."""
    tensor_fields = type(intervention)._tensor_fields
    if not tensor_fields:
        return intervention
    return dataclasses.replace(intervention, **{name: change(getattr(intervention, name)) for name in tensor_fields})


def _subset_intervention(
    intervention: Intervention, picked: list[int], n: int, old_width: int, new_width: int
) -> Intervention:
    dropped = old_width - new_width

    def cut(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.ndim >= 2 and tensor.shape[0] == n and tensor.shape[1] == old_width:
            return tensor[picked][:, dropped:]
        return tensor

    changes: dict[str, Any] = {}
    if intervention.rows is not None:
        wanted = {int(r) % n for r in intervention.rows}
        changes["rows"] = [new for new, old in enumerate(picked) if old in wanted]
    if intervention.positions is not None and dropped:
        changes["positions"] = [p if p < 0 else p - dropped for p in intervention.positions if p < 0 or p >= dropped]
    return dataclasses.replace(_replace_tensors(intervention, cut), **changes)


def position_labels(model: Model, task: PatchingTask) -> list[str]:
    """A label per raw position (batch column), true for every example.

    ``"7: John"`` where every clean prompt holds that token there; where they differ (prompts of
    different templates) the label says how many distinct tokens the column holds, ``"7: (5 tokens)"``,
    and ``"<pad>"`` where every row is padding, so a label never names a token that only one example has.
    """
    labels = []
    ids, mask = task.clean.input_ids.cpu(), task.clean.attention_mask.cpu().bool()
    for column in range(ids.shape[1]):
        tokens = set(ids[mask[:, column], column].tolist())
        if not tokens:
            labels.append(f"{column}:<pad>")
        elif len(tokens) == 1 and bool(mask[:, column].all()):
            labels.append(f"{column}:{model.tokenizer.decode([tokens.pop()])}")
        else:
            padded = "" if bool(mask[:, column].all()) else ", pad"
            labels.append(f"{column}: ({len(tokens)} token{'s' if len(tokens) > 1 else ''}{padded})")
    return labels


def named_columns(task: PatchingTask, names: Sequence[str]) -> Int[torch.Tensor, "example name"]:
    """The batch column of each example's token for each named position (see the module docstring)."""
    missing = [name for name in names if name not in task.positions]
    if missing:
        known = list(task.positions) or "none: this task declares no named positions"
        raise TaskError(f"task {task.name!r} has no named position {missing}; its named positions are {known}")
    width = task.clean.shape[1]
    return torch.tensor([[width + p for p in task.positions[name]] for name in names], dtype=torch.long).T.reshape(
        len(task), len(names)
    )


def patched_tokens(model: Model, task: PatchingTask, columns: Int[torch.Tensor, "example name"]) -> list[list[str]]:
    """``"12: John"``: each example's clean token at each column (numbered from its first real token)."""
    ids = task.clean.input_ids.cpu()
    starts = (task.clean.shape[1] - task.clean.lengths.cpu()).tolist()
    return [
        [f"{int(c) - starts[e]}:{model.tokenizer.decode([int(ids[e, c])])}" for c in row]
        for e, row in enumerate(columns.tolist())
    ]
