"""Shards: the unit of progress of a resumable sweep.

A sweep splits its work into numbered shards (a batch of prompts, a range of layers, a chunk of
activations) and writes each one when it is computed. A shard of group ``g`` and index ``i`` is up
to three files under ``<run>/shards/g/``::

    000007.safetensors   its tensors (optional)
    000007.parquet       its table rows (optional)
    000007.done          a small JSON marker, written last

A shard counts as finished exactly when its marker exists and it reads back whole: a shard whose
marker or payload is damaged (empty or garbage marker, missing or truncated file) or whose
floating-point tensors hold NaN or inf counts as unfinished, with a :class:`DamagedShardWarning`, and
is recomputed on resume. The payload files are renamed into
place first, each atomically, and the marker is renamed in last (after an fsync of the directory,
so the order holds on disk too). A writer killed at any point therefore leaves either a finished
shard or an unfinished one whose leftover payload is ignored and overwritten on resume, never a
shard that counts as done but is missing data. Rewriting a finished shard first removes its marker,
so a crash in the middle of a rewrite cannot pair the old marker with half-new data.

The marker records which payload files belong to the shard, so reading never depends on stray
files. Resuming then means: ask :func:`finished_indices`, compute the rest, and read everything
back in index order with :func:`read_shard`, which gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd
import torch

from interp.runs.atomic import fsync_directory
from interp.runs.errors import ArtifactNotFoundError, DamagedShardError, DamagedShardWarning, InvalidNameError
from interp.runs.formats import (
    TABLE_SUFFIX,
    TENSORS_SUFFIX,
    read_json,
    read_table,
    read_tensors,
    write_json,
    write_table,
    write_tensors,
)
from interp.runs.manifest import now_iso

SHARDS_DIR = "shards"
DONE_SUFFIX = ".done"
_DONE_RE = re.compile(r"(\d+)\.done")


def check_index(index: int) -> int:
    """Return ``index`` if it is a non-negative int, else raise :class:`InvalidNameError`."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidNameError(f"shard index must be a non-negative int, got {index!r}")
    return index


def _stem(shard_dir: Path, index: int) -> Path:
    return shard_dir / f"{index:06d}"


def write_shard(
    shard_dir: Path,
    index: int,
    tensors: dict[str, torch.Tensor] | None,
    frame: pd.DataFrame | None,
) -> None:
    """Write shard ``index`` of the group stored in ``shard_dir``; it counts as finished only at the end."""
    stem = _stem(shard_dir, check_index(index))
    shard_dir.parent.mkdir(exist_ok=True)  # not parents=True: a deleted run must stay deleted
    shard_dir.mkdir(exist_ok=True)
    done = stem.with_suffix(DONE_SUFFIX)
    if done.exists():
        done.unlink()
        fsync_directory(shard_dir)
    tensors_path, table_path = stem.with_suffix(TENSORS_SUFFIX), stem.with_suffix(TABLE_SUFFIX)
    if tensors is not None:
        write_tensors(tensors_path, tensors)
    else:
        tensors_path.unlink(missing_ok=True)
    if frame is not None:
        write_table(table_path, frame)
    else:
        table_path.unlink(missing_ok=True)
    marker = {"index": index, "tensors": tensors is not None, "table": frame is not None, "written": now_iso()}
    write_json(done, marker, "shard marker")


def _marked_indices(shard_dir: Path) -> list[int]:
    if not shard_dir.is_dir():
        return []
    found = (_DONE_RE.fullmatch(p.name) for p in shard_dir.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def _load(stem: Path) -> tuple[dict[str, torch.Tensor], pd.DataFrame | None]:
    """Read a marked shard and check it whole; :class:`DamagedShardError` says what is wrong."""
    done = stem.with_suffix(DONE_SUFFIX)
    try:
        marker = read_json(done)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DamagedShardError(f"its marker {done.name} is unreadable ({type(e).__name__}: {e})") from None
    if not (isinstance(marker, dict) and isinstance(marker.get("tensors"), bool) and isinstance(marker.get("table"), bool)):
        raise DamagedShardError(f"its marker {done.name} is not a shard marker: {str(marker)[:80]!r}")
    tensors: dict[str, torch.Tensor] = {}
    frame = None
    if marker["tensors"]:
        path = stem.with_suffix(TENSORS_SUFFIX)
        try:
            tensors = read_tensors(path)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError for a missing file
            raise DamagedShardError(f"its tensors {path.name} are unreadable ({type(e).__name__}: {e})") from None
        for key, tensor in tensors.items():
            if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise DamagedShardError(f"its tensor {key!r} in {path.name} holds {bad} NaN or infinite value(s)")
    if marker["table"]:
        path = stem.with_suffix(TABLE_SUFFIX)
        try:
            frame = read_table(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError for a missing file
            raise DamagedShardError(f"its table {path.name} is unreadable ({type(e).__name__}: {e})") from None
    return tensors, frame


def marked_indices(shard_dir: Path) -> list[int]:
    """Indices whose done-marker exists, damaged or not (cheap: reads only the directory)."""
    return _marked_indices(shard_dir)


def damaged_reason(shard_dir: Path, index: int) -> str | None:
    """Why marked shard ``index`` cannot be used (unreadable, missing a file, non-finite values), or None."""
    try:
        _load(_stem(shard_dir, check_index(index)))
    except DamagedShardError as e:
        return str(e)
    return None


def finished_indices(shard_dir: Path) -> list[int]:
    """Indices of the finished shards in ``shard_dir``, sorted ([] when the group has none).

    A shard whose marker exists but which cannot be read whole, or whose floating-point values are not
    all finite, counts as unfinished (so resuming recomputes it), with a :class:`DamagedShardWarning`
    naming it. Only reads: nothing is removed here.
    """
    finished = []
    for index in _marked_indices(shard_dir):
        reason = damaged_reason(shard_dir, index)
        if reason is None:
            finished.append(index)
        elif not _stem(shard_dir, index).with_suffix(DONE_SUFFIX).exists():
            continue  # a writer is rewriting it right now (its marker goes first): unfinished, not damaged
        else:
            warnings.warn(
                f"shard {index} of group {shard_dir.name!r} in {shard_dir.parent.parent} is damaged: {reason}; "
                "it counts as unfinished and is recomputed when the run is resumed",
                DamagedShardWarning,
                stacklevel=3,
            )
    return finished


def read_shard(shard_dir: Path, index: int) -> tuple[dict[str, torch.Tensor], pd.DataFrame | None]:
    """The tensors ({} if it has none) and table (None if it has none) of finished shard ``index``.

    Raises :class:`ArtifactNotFoundError` for a shard not finished, and :class:`DamagedShardError` for one
    that is damaged (see :func:`finished_indices`), never a raw decoder error and never non-finite data.
    """
    stem = _stem(shard_dir, check_index(index))
    done = stem.with_suffix(DONE_SUFFIX)
    if not done.exists():
        have = _marked_indices(shard_dir)
        raise ArtifactNotFoundError(
            f"shard {index} of group {shard_dir.name!r} is not finished; finished shards: {have or 'none'}"
        )
    try:
        return _load(stem)
    except DamagedShardError as e:
        raise DamagedShardError(
            f"shard {index} of group {shard_dir.name!r} in {shard_dir.parent.parent} is damaged: {e}; "
            "resume the run to recompute it"
        ) from None
