"""Names inside the store: run ids, kinds, and artifact names, checked before they touch a path.

Every name the store puts into a path is checked first, because a name is user input that becomes
a file name: ``write_table("../../etc/x", ...)`` must not escape the run directory, and a name with
a slash, a leading dot (hidden, and the prefix of the store's temporary files) or a space would
make a listing ambiguous. Artifact and shard-group names are identifiers that may also contain
hyphens (``layer_3``, ``logit-diff``); run ids may in addition contain dots, since people like
``ioi-v1.2``.

A run id made by the store is ``<kind>-<YYYYmmdd-HHMMSS>-<6 hex>`` (UTC): it sorts by kind and time
in a file browser, and the random tail keeps two runs started in the same second apart.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from interp.runs.errors import InvalidNameError

# matched with re.fullmatch: "$" alone would also accept a name ending in a newline
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
_RUN_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_DEFAULT_ID_RE = re.compile(r"(?P<kind>.+)-\d{8}-\d{6}-[0-9a-f]{6}")

# JSON names the run itself uses: ``write_json("manifest", ...)`` would overwrite the manifest.
RESERVED_JSON_NAMES = frozenset({"manifest"})


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a simple identifier (letters, digits, ``_``, ``-``), else raise."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"{what} name {name!r} is not allowed: use 1-128 letters, digits, '_' or '-', not starting "
            "with '-' (no slashes, dots or spaces), e.g. 'logit_diff' or 'layer-3'"
        )
    return name


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a valid run directory name, else raise."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id) or ".." in run_id:
        raise InvalidNameError(
            f"run id {run_id!r} is not allowed: use 1-200 letters, digits, '_', '-' or '.', starting "
            "with a letter, digit or '_' and without '..'"
        )
    return run_id


def new_run_id(kind: str, now: datetime | None = None) -> str:
    """A fresh id ``<kind>-<YYYYmmdd-HHMMSS>-<6 hex>`` for a run of ``kind`` (time in UTC)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


def kind_from_run_id(run_id: str) -> str | None:
    """The kind encoded in a store-made id, or None for an id chosen by hand.

    Used only to place a run whose manifest cannot be read under the right kind in listings.
    """
    match = _DEFAULT_ID_RE.fullmatch(run_id)
    return match.group("kind") if match else None
