"""The three file formats of a run: Parquet tables, safetensors tensors, JSON values. Never pickle.

Pickle files run code when loaded, so a shared or downloaded run directory could take over the
machine of whoever opens it; these three formats are data only:

- **Parquet** (via pyarrow) for tables: columnar, typed, compressed, and readable from pandas,
  polars, DuckDB or Spark. The DataFrame's index and dtypes survive the round trip.
- **safetensors** for tensors: exact bits and dtypes (bfloat16 included), a JSON header with
  optional string metadata, and readable by the whole Hugging Face ecosystem. Tensors are written
  from CPU memory; tensors that share storage (a view and its base) are copied apart first, since
  safetensors refuses aliases.
- **JSON** for small structured values (see :mod:`interp.runs.jsonvalues`).

Every writer here goes through :func:`interp.runs.atomic.atomic_write`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from interp.runs.atomic import atomic_write, atomic_write_bytes
from interp.runs.errors import NotSerializableError
from interp.runs.jsonvalues import check_json, dumps

TABLE_SUFFIX = ".parquet"
TENSORS_SUFFIX = ".safetensors"
JSON_SUFFIX = ".json"


def write_table(path: Path, frame: pd.DataFrame) -> None:
    """Atomically write ``frame`` as Parquet (index and dtypes included)."""
    if not isinstance(frame, pd.DataFrame):
        raise NotSerializableError(f"a table must be a pandas.DataFrame, got {type(frame).__name__}")
    odd = [c for c in frame.columns if not isinstance(c, str)]
    if odd:  # pyarrow would silently turn 0 into "0", so the table would not read back as written
        raise NotSerializableError(f"table column names must be strings, got {odd[:5]}; rename them first")
    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)
    except (pa.ArrowException, ValueError, TypeError) as e:
        raise NotSerializableError(
            f"cannot write this DataFrame as Parquet ({type(e).__name__}: {e}); each column must hold one "
            "type (convert objects such as tensors to lists or numbers)"
        ) from e
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet table back into pandas."""
    return pq.read_table(path).to_pandas()


def _cpu_tensors(tensors: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict):
        raise NotSerializableError(f"{what} must be a dict of name -> torch.Tensor, got {type(tensors).__name__}")
    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, tensor in tensors.items():
        if not isinstance(key, str):
            raise NotSerializableError(f"{what} has key {key!r}; tensor names must be strings")
        if not isinstance(tensor, torch.Tensor):
            raise NotSerializableError(f"{what}[{key!r}] is a {type(tensor).__name__}, not a torch.Tensor")
        cpu = tensor.detach().to("cpu").contiguous()
        if cpu.numel() and cpu.untyped_storage().data_ptr() in storages:
            cpu = cpu.clone()
        storages.add(cpu.untyped_storage().data_ptr())
        out[key] = cpu
    return out


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write ``tensors`` (any device, any dtype) as safetensors, with optional metadata."""
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise NotSerializableError(
            "safetensors metadata must be a dict of str -> str; encode other values with json.dumps"
        )
    cpu = _cpu_tensors(tensors, "tensors")
    atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into CPU tensors, bit for bit as written."""
    return load_file(path, device="cpu")


def read_tensor_metadata(path: Path) -> dict[str, str]:
    """The string metadata stored with a safetensors file ({} when none was given)."""
    with safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


def write_json(path: Path, value: Any, what: str) -> None:
    """Atomically write a JSON value, refusing anything JSON cannot hold."""
    check_json(value, what)
    atomic_write_bytes(path, dumps(value))


def read_json(path: Path) -> Any:
    """Read a JSON value."""
    return json.loads(path.read_bytes().decode("utf-8"))
