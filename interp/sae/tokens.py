"""Token sources: text files, JSONL, token arrays on disk, and the shipped demo corpus, as packed rows.

SAEs train on activations of *many* tokens, so documents are not padded one per row (padding
wastes forward passes and its activations are meaningless). Instead they are **packed**: every
document is tokenised without special tokens, followed by a separator token (the tokenizer's EOS),
and the whole stream is cut into rows of ``context_size`` tokens, optionally each starting with BOS.
A document may span two rows; the model sees it with less context in the second, as in SAELens's
and sparsify's pipelines. The tail shorter than a row is dropped.

The result, :class:`TokenRows`, is an ``(n_rows, context_size)`` integer array (a numpy memmap for
token files, so huge token sets are never read into memory) with a *fingerprint*: a hash of the
token ids (or of a token file's identity), which names activation caches so a cache is reused only
for exactly the same tokens.

Which positions should train an SAE: special tokens (BOS, EOS separators, padding) carry
activations unlike any text token, and the first position of every row is an attention sink with a
huge norm (about 23,000 on SmolLM2-135M's middle layer against a median of 170), whatever token
sits there. When that first token is a weak one (a newline, a word fragment) the sink moves to the
*second* position: on the demo corpus, 14 rows have a position-1 norm of 8,600-24,000, and no
token beyond position 1 exceeds 5x the median. One such token in a batch of 4,096 dominates its
variance, so :meth:`TokenRows.keep_mask` drops special tokens and the first two positions by default.

**Sources users bring** are read as a stream, never whole: Parquet files (a text column, read one
record batch at a time), a Hugging Face dataset saved to disk with ``save_to_disk`` (its Arrow files
read one record batch at a time with pyarrow, so the ``datasets`` package is not needed), and
directories of text files (one file at a time). Documents are tokenised in batches and their ids
kept as compact int32 arrays (4 bytes a token); ``max_tokens`` stops reading once that many tokens
are in. For corpora beyond memory, tokenise once into a token file (``kind: tokens``), which is
memory-mapped.

The demo corpus (``interp/sae/corpus/``, about 400 KB, see its README for sources and licences)
is: 35 short varied English texts written for this project, and prose from the Python 3.11
reference and standard-library docstrings (PSF licence).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from jaxtyping import Bool, Int
from pydantic import Field

from interp.config import ConfigModel
from interp.errors import InterpError

CORPUS_DIR = Path(__file__).parent / "corpus"
DEMO_FILES = ("written.txt", "python_reference.txt", "python_docstrings.txt")
DOCUMENT_SEPARATOR = "\n\n\n"


class TokenSourceError(InterpError, ValueError):
    """A token source that cannot be read or packed."""


class DemoSource(ConfigModel):
    """The corpus shipped with the package."""

    kind: Literal["demo"] = "demo"


class TextSource(ConfigModel):
    """Plain text files; documents inside a file are separated by ``separator``."""

    kind: Literal["text"] = "text"
    paths: list[str] = Field(min_length=1)
    separator: str = DOCUMENT_SEPARATOR


class JsonlSource(ConfigModel):
    """JSON Lines files: one document per line, its text under ``field``."""

    kind: Literal["jsonl"] = "jsonl"
    paths: list[str] = Field(min_length=1)
    field: str = "text"


class TokenFileSource(ConfigModel):
    """Token ids already on disk: ``.npy`` (1-D stream or 2-D rows) or raw binary of ``dtype``."""

    kind: Literal["tokens"] = "tokens"
    path: str
    dtype: Literal["uint16", "int32", "uint32", "int64"] = "uint16"


class ParquetSource(ConfigModel):
    """Parquet files (or directories of them) with one document per row in the string column ``column``."""

    kind: Literal["parquet"] = "parquet"
    paths: list[str] = Field(min_length=1)
    column: str = "text"
    max_tokens: int | None = Field(None, gt=0, description="stop reading once this many tokens are in")


class HFDiskSource(ConfigModel):
    """A Hugging Face dataset written by ``save_to_disk`` (a ``Dataset``, or one ``split`` of a ``DatasetDict``)."""

    kind: Literal["hf_disk"] = "hf_disk"
    path: str
    split: str | None = None
    column: str = "text"
    max_tokens: int | None = Field(None, gt=0, description="stop reading once this many tokens are in")


class TextDirSource(ConfigModel):
    """Every file matching ``pattern`` under a directory, in sorted order; each file is split into documents at ``separator``."""

    kind: Literal["text_dir"] = "text_dir"
    path: str
    pattern: str = "**/*.txt"
    separator: str = DOCUMENT_SEPARATOR
    max_tokens: int | None = Field(None, gt=0, description="stop reading once this many tokens are in")


StreamSource = ParquetSource | HFDiskSource | TextDirSource
TokenSource = Annotated[
    DemoSource | TextSource | JsonlSource | TokenFileSource | ParquetSource | HFDiskSource | TextDirSource,
    Field(discriminator="kind"),
]


@dataclass
class TokenRows:
    """Packed token rows plus what is needed to tell which positions train an SAE."""

    ids: np.ndarray
    fingerprint: str
    special_ids: tuple[int, ...]
    prepend_bos: bool

    @property
    def n_rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def context_size(self) -> int:
        return int(self.ids.shape[1])

    def head(self, n_rows: int) -> TokenRows:
        """The first ``n_rows`` rows only (a smaller token set with its own fingerprint)."""
        if n_rows >= self.n_rows:
            return self
        digest = hashlib.sha256(f"{self.fingerprint}|head|{n_rows}".encode()).hexdigest()[:16]
        return TokenRows(ids=self.ids[:n_rows], fingerprint=digest, special_ids=self.special_ids, prepend_bos=self.prepend_bos)

    def rows(self, index: np.ndarray | list[int] | slice) -> Int[torch.Tensor, "rows pos"]:
        """Token ids of some rows, as a long tensor."""
        return torch.from_numpy(np.asarray(self.ids[index], dtype=np.int64))

    def keep_mask(
        self, ids: Int[torch.Tensor, "rows pos"], exclude_special: bool = True, skip_first: int = 2
    ) -> Bool[torch.Tensor, "rows pos"]:
        """True at positions whose activations should be used (not special, not among the first ``skip_first``)."""
        keep = torch.ones_like(ids, dtype=torch.bool)
        if exclude_special and self.special_ids:
            keep &= ~torch.isin(ids, torch.tensor(self.special_ids, dtype=ids.dtype, device=ids.device))
        keep[:, :skip_first] = False
        return keep


def _documents(source: DemoSource | TextSource | JsonlSource) -> list[str]:
    if isinstance(source, DemoSource):
        texts = [(CORPUS_DIR / name).read_text(encoding="utf-8") for name in DEMO_FILES]
        return [doc.strip() for text in texts for doc in text.split(DOCUMENT_SEPARATOR) if doc.strip()]
    docs: list[str] = []
    for raw in source.paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise TokenSourceError(f"token source file {path} does not exist")
        if isinstance(source, TextSource):
            docs += [d.strip() for d in path.read_text(encoding="utf-8").split(source.separator) if d.strip()]
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TokenSourceError(f"{path}:{number} is not JSON: {error}") from None
            if not isinstance(record, dict) or not isinstance(record.get(source.field), str):
                raise TokenSourceError(f"{path}:{number} has no string field {source.field!r}")
            docs.append(record[source.field])
    if not docs:
        raise TokenSourceError(f"token source {source!r} holds no documents")
    return docs


def _column_batches(batches: Iterator, column: str, where: str) -> Iterator[list[str]]:
    """The string column ``column`` of each pyarrow record batch, as a list of documents."""
    for batch in batches:
        if column not in batch.schema.names:
            raise TokenSourceError(f"{where} has no column {column!r}; its columns are {batch.schema.names}")
        values = batch.column(column).to_pylist()
        if any(v is not None and not isinstance(v, str) for v in values):
            raise TokenSourceError(f"column {column!r} of {where} does not hold text")
        yield [v for v in values if v and v.strip()]


def _parquet_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(path.rglob("*.parquet"))
            if not found:
                raise TokenSourceError(f"directory {path} holds no .parquet files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise TokenSourceError(f"token source file {path} does not exist")
    return files


def _arrow_files(source: HFDiskSource) -> list[Path]:
    """The Arrow files of a ``save_to_disk`` directory (``state.json`` lists them), for ``source.split``."""
    root = Path(source.path).expanduser()
    if (root / "dataset_dict.json").is_file():
        splits = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        if source.split is None or source.split not in splits:
            raise TokenSourceError(f"{root} is a DatasetDict; choose its split with split: one of {splits}")
        root = root / source.split
    state = root / "state.json"
    if not state.is_file():
        raise TokenSourceError(
            f"{root} is not a dataset saved with save_to_disk (no state.json); for Parquet files use kind: parquet"
        )
    names = [entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8")).get("_data_files", [])]
    missing = [name for name in names if not (root / name).is_file()]
    if missing or not names:
        raise TokenSourceError(f"dataset {root} lists Arrow files it does not hold: {missing or 'none listed'}")
    return [root / name for name in names]


def _stream_documents(source: StreamSource) -> Iterator[list[str]]:
    """Batches of documents of a streamed source, read a piece at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(source, ParquetSource):
        for path in _parquet_files(source.paths):
            try:
                table = pq.ParquetFile(path)
            except (pa.ArrowInvalid, OSError) as error:
                raise TokenSourceError(f"{path} is not a readable Parquet file ({error})") from None
            if source.column not in table.schema_arrow.names:
                raise TokenSourceError(f"{path} has no column {source.column!r}; its columns are {table.schema_arrow.names}")
            yield from _column_batches(table.iter_batches(batch_size=256, columns=[source.column]), source.column, str(path))
    elif isinstance(source, HFDiskSource):
        for path in _arrow_files(source):
            with pa.memory_map(str(path)) as stream:
                yield from _column_batches(iter(pa.ipc.open_stream(stream)), source.column, str(path))
    else:
        root = Path(source.path).expanduser()
        if not root.is_dir():
            raise TokenSourceError(f"text directory {root} does not exist")
        files = sorted(p for p in root.glob(source.pattern) if p.is_file())
        if not files:
            raise TokenSourceError(f"no file under {root} matches {source.pattern!r}")
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise TokenSourceError(f"{path} is not UTF-8 text; narrow pattern to the text files") from None
            yield [d.strip() for d in text.split(source.separator) if d.strip()]


def _stream_ids(source: StreamSource, tokenizer) -> np.ndarray:
    """The token stream of a streamed source (documents each followed by EOS), up to ``max_tokens``."""
    separator = tokenizer.eos_token_id
    parts: list[np.ndarray] = []
    total = 0
    for documents in _stream_documents(source):
        if not documents:
            continue
        for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
            piece = np.asarray([*ids, separator] if separator is not None else ids, dtype=np.int32)
            parts.append(piece)
            total += len(piece)
        if source.max_tokens is not None and total >= source.max_tokens:
            break
    if not parts:
        raise TokenSourceError(f"token source {source!r} holds no documents")
    stream = np.concatenate(parts)
    return stream[: source.max_tokens] if source.max_tokens is not None else stream


def _special_ids(tokenizer) -> tuple[int, ...]:
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            ids.add(int(value))
    return tuple(sorted(ids))


def _pack(stream: np.ndarray, context_size: int, bos: int | None) -> np.ndarray:
    width = context_size - (bos is not None)
    n_rows = len(stream) // width
    if n_rows == 0:
        raise TokenSourceError(f"the source has {len(stream)} tokens, fewer than one row of {context_size}")
    rows = stream[: n_rows * width].reshape(n_rows, width)
    if bos is not None:
        rows = np.concatenate([np.full((n_rows, 1), bos, dtype=rows.dtype), rows], axis=1)
    return rows


def load_tokens(source: TokenSource, tokenizer, context_size: int, prepend_bos: bool = False) -> TokenRows:
    """Tokenise and pack ``source`` into rows of ``context_size`` tokens."""
    bos = None
    if prepend_bos:
        if tokenizer.bos_token_id is None:
            raise TokenSourceError("prepend_bos=True but the tokenizer has no BOS token")
        bos = int(tokenizer.bos_token_id)
    specials = _special_ids(tokenizer)
    if isinstance(source, TokenFileSource):
        path = Path(source.path).expanduser()
        if not path.is_file():
            raise TokenSourceError(f"token file {path} does not exist")
        array = np.load(path, mmap_mode="r") if path.suffix == ".npy" else np.memmap(path, dtype=source.dtype, mode="r")
        _check_vocabulary(array, len(tokenizer), path)
        stat = path.stat()
        identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{array.dtype}|{context_size}|{bos}"
        fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:16]
        if array.ndim == 2:
            if array.shape[1] != context_size:
                raise TokenSourceError(f"{path} holds rows of {array.shape[1]} tokens, but context_size is {context_size}")
            return TokenRows(ids=array, fingerprint=fingerprint, special_ids=specials, prepend_bos=prepend_bos)
        return TokenRows(ids=_pack(np.asarray(array), context_size, bos), fingerprint=fingerprint, special_ids=specials, prepend_bos=prepend_bos)
    if isinstance(source, ParquetSource | HFDiskSource | TextDirSource):
        rows = _pack(_stream_ids(source, tokenizer), context_size, bos)
        digest = hashlib.sha256(rows.tobytes()).hexdigest()[:16]
        return TokenRows(ids=rows, fingerprint=digest, special_ids=specials, prepend_bos=prepend_bos)
    separator = tokenizer.eos_token_id
    pieces: list[int] = []
    for document in _documents(source):
        pieces += tokenizer(document, add_special_tokens=False)["input_ids"]
        if separator is not None:
            pieces.append(int(separator))
    rows = _pack(np.asarray(pieces, dtype=np.int32), context_size, bos)
    digest = hashlib.sha256(rows.tobytes()).hexdigest()[:16]
    return TokenRows(ids=rows, fingerprint=digest, special_ids=specials, prepend_bos=prepend_bos)


def _check_vocabulary(array: np.ndarray, vocabulary: int, path: Path) -> None:
    """Refuse a token file whose ids the tokenizer cannot have made (one pass over the file): an id
    past the vocabulary would fail deep inside the model's embedding, or index a wrong row of it."""
    if not array.size:
        raise TokenSourceError(f"token file {path} holds no tokens")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocabulary:
        raise TokenSourceError(
            f"token file {path} holds ids from {low} to {high}, but the model's tokenizer has {vocabulary} ids "
            f"(0 to {vocabulary - 1}): the file was made with another tokenizer; rebuild it with this model's "
            "tokenizer, or train on the model it was made for"
        )


def split_rows(n_rows: int, n_eval: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of row indices into (train, eval), both sorted."""
    if not 0 <= n_eval < n_rows:
        raise TokenSourceError(f"cannot hold out {n_eval} evaluation rows of {n_rows}")
    order = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])
