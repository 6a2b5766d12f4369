"""Clean/corrupt prompt pairs from a JSONL file: patching on your own data.

Each non-blank line is one example::

    {"clean": "The capital of France is", "corrupt": "The capital of Italy is",
     "answer": " Paris", "wrong": " Rome"}

``answer`` is the correct next token after the clean prompt and ``wrong`` the contrasting one
(typically the corrupt prompt's answer), each exactly one token for the model's tokenizer, usually
with its leading space. A good corrupt prompt changes only what the behaviour depends on (here the
country) and keeps every other token, so it must tokenise to the same length as the clean prompt:
patching compares the two runs position by position.

A line may also name positions, ``"positions": {"country": 4, "END": -1}``: token indices of the
clean prompt (0 = its first token, negative from its end), one index per name and the same names on
every line. A sweep by named position then patches each example at its own index for the name,
so prompts of different layouts line up by meaning rather than by column.

Lines are validated with pydantic (unknown or missing keys, non-string or empty values), then
tokenised; every error names the file, the line number and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from interp.errors import TokenizationError
from interp.model import Model
from interp.tasks.base import PatchingTask, TaskError
from interp.tokenize import encode


class PairRecord(BaseModel):
    """One line of a pairs file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    clean: str
    corrupt: str
    answer: str
    wrong: str
    positions: dict[str, int] | None = None

    @field_validator("clean", "corrupt", "answer", "wrong")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise TaskError("must be a non-empty string")
        return value


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "line"
        parts.append(f"field {where!r}: {item['msg']}")
    return "; ".join(parts)


def read_pairs(path: str | Path) -> list[tuple[int, PairRecord]]:
    """The validated records of a JSONL file, each with its (1-based) line number."""
    file = Path(path)
    if not file.is_file():
        raise TaskError(f"pairs file {file} does not exist")
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as error:
            raise TaskError(f"{file} line {number}: not valid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(raw, dict):
            raise TaskError(f"{file} line {number}: expected a JSON object with keys clean, corrupt, answer, wrong")
        try:
            records.append((number, PairRecord.model_validate(raw)))
        except ValidationError as error:
            raise TaskError(f"{file} line {number}: {_describe(error)}") from None
    if not records:
        raise TaskError(f"pairs file {file} has no examples")
    return records


def pairs_from_jsonl(model: Model, path: str | Path, name: str | None = None) -> PatchingTask:
    """A :class:`PatchingTask` from a JSONL file of ``{"clean", "corrupt", "answer", "wrong"}`` lines."""
    file = Path(path)
    records = read_pairs(file)
    named = records[0][1].positions
    positions: dict[str, list[int]] = {key: [] for key in named or {}}
    for number, record in records:
        for field in ("answer", "wrong"):
            try:
                model.token_id(getattr(record, field))
            except TokenizationError as error:
                raise TaskError(
                    f"{file} line {number}: field {field!r}: {error} (answers usually need their leading space)"
                ) from None
        if record.answer == record.wrong:
            raise TaskError(f"{file} line {number}: field 'wrong' equals 'answer' ({record.answer!r})")
        clean = encode(model.tokenizer, record.clean, model.prepend_bos)
        corrupt = encode(model.tokenizer, record.corrupt, model.prepend_bos)
        if len(clean) != len(corrupt):
            raise TaskError(
                f"{file} line {number}: field 'corrupt' is {len(corrupt)} tokens but 'clean' is {len(clean)}; "
                "patching needs aligned positions, so reword the corrupt prompt to the same token length"
            )
        if (record.positions or {}).keys() != positions.keys() or (named is None) != (record.positions is None):
            raise TaskError(
                f"{file} line {number}: field 'positions' names {sorted(record.positions or {})} but line "
                f"{records[0][0]} names {sorted(positions)}; every line must name the same positions"
            )
        for key, index in (record.positions or {}).items():
            if not -len(clean) <= index < len(clean):
                raise TaskError(
                    f"{file} line {number}: field 'positions': {key!r} is {index}, outside the clean prompt's "
                    f"{len(clean)} tokens (use 0..{len(clean) - 1}, or -1 for the last token)"
                )
            positions[key].append(index if index < 0 else index - len(clean))
    return PatchingTask.from_prompts(
        model,
        name=name or file.stem,
        clean_prompts=[record.clean for _, record in records],
        corrupt_prompts=[record.corrupt for _, record in records],
        answers=[record.answer for _, record in records],
        wrong=[record.wrong for _, record in records],
        meta={"task": "jsonl", "path": str(file)},
        examples={"line": [number for number, _ in records]},
        positions=positions,
    )
