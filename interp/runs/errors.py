"""Errors the results store raises.

Each names what was wrong and what to do about it, and derives from :class:`interp.errors.InterpError`
as well as from the builtin exception a caller would naturally catch (``KeyError`` for a missing run,
``FileExistsError`` for a taken id, ``ValueError`` for a bad name or a changed config), so code
written against either keeps working.
"""

from __future__ import annotations

from interp.errors import InterpError


class RunNotFoundError(InterpError, KeyError):
    """No run with this id in the store; the message names the closest ids."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class RunExistsError(InterpError, FileExistsError):
    """A run with this id already exists (ids are never reused: resume or delete it instead)."""


class CorruptRunError(InterpError, RuntimeError):
    """A run directory whose manifest is missing, unreadable or malformed."""


class ConfigMismatchError(InterpError, ValueError):
    """Resuming a run with a config that differs from the one it was started with."""


class InvalidNameError(InterpError, ValueError):
    """A run id, kind, table, tensor, JSON or shard-group name that is not a simple identifier, or a shard
    index that is not a non-negative int."""


class NotSerializableError(InterpError, TypeError):
    """A value the store cannot write as asked: not JSON for a manifest or JSON file (the message gives
    its path), not a tensor for a tensor file, not a DataFrame for a table."""


class ArtifactNotFoundError(InterpError, FileNotFoundError):
    """A table, tensor file, JSON file or shard that the run does not have; names the ones it has."""


class ManifestFieldError(InterpError, ValueError):
    """A manifest update that would change a field fixed at creation (``id``, ``format``) or set an unknown status."""


class DamagedShardError(InterpError, RuntimeError):
    """A finished shard that cannot be read whole (bad marker, missing or truncated file) or holds NaN/inf;
    resuming the run recomputes it."""


class DamagedShardWarning(UserWarning):
    """Notice that a damaged shard was found and counts as unfinished (it is recomputed on resume)."""


class UnreadableRunWarning(UserWarning):
    """Notice that a run the store could not read was skipped (e.g. while looking for a run to resume)."""


class RunLockedError(InterpError, RuntimeError):
    """A run another process is writing (it holds the run's write lock); names that process."""


class StoreWriteError(InterpError, OSError):
    """The store cannot write (disk full, read-only, a file where a directory should be); names the path."""


class StoreNotFoundError(InterpError, FileNotFoundError):
    """A runs store path that does not exist, is a file, or cannot be read."""
