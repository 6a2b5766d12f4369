"""Command-line options shared by every command that has them, each defined once.

* ``--runs DIR``: the runs store, a directory (default ``$INTERP_RUNS_DIR``, else ``data/runs``; see
  :func:`interp.runs.default_runs_root`) for ``patch``, ``attribute``, ``sae train``, ``runs`` and
  ``app``;
* ``--resume RUN``: continue run ``RUN`` (an id, or ``latest``) from its last finished shard, with
  the meaning :mod:`interp.runs.lifecycle` gives it;
* ``--set KEY=VALUE`` (repeatable): override a config setting by its dotted path
  (:func:`interp.config.load_config`);
* ``--device`` and ``--dtype``: shorthands for ``--set device=...`` and ``--set dtype=...``;
* ``--executor local|ray``, ``--address`` and ``--workers``: where a sweep's shards are computed
  (:mod:`interp.cluster`): in this process, or on Ray actors of the cluster at ``--address`` (without
  one, a local cluster of ``--workers`` actors started for the command), for ``patch``, ``attribute``
  and ``steer`` (function vectors). With ``ray`` the config's device is checked by each actor, not by
  this process (:func:`on_workers`), so a driver without a GPU can send ``device: cuda`` work to a
  cluster's GPUs;
* ``--debug`` (before the command: ``interp --debug patch ...``): show the full traceback of an error
  instead of the one line :mod:`interp.cli_errors` prints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from interp.config import parse_overrides
from interp.errors import InvalidArgumentError


def runs_directory(value: Path | None) -> Path | None:
    """``--runs`` as given; an :class:`InvalidArgumentError` (one line, exit 2 through
    :mod:`interp.cli_errors`) when it names something that exists and is not a directory."""
    if value is not None and value.expanduser().exists() and not value.expanduser().is_dir():
        raise InvalidArgumentError(
            f"--runs {value} is a file, not a runs store directory; pass a directory (it need not exist yet)"
        )
    return value


RunsOption = Annotated[
    Path | None,
    typer.Option(
        "--runs", metavar="DIR", callback=runs_directory,
        help="runs store directory (default: $INTERP_RUNS_DIR, else data/runs)",
    ),
]
ResumeOption = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="RUN",
        help="continue run RUN from its last finished shard: a run id, or 'latest' for the newest unfinished "
        "run of this config",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="override a config setting, e.g. --set sweeps.0.layers=[0,1]"),
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="override the config's device (cpu, cuda, cuda:1)")
]
DebugOption = Annotated[
    bool,
    typer.Option("--debug", help="on an error, show the full traceback instead of one line"),
]
DtypeOption = Annotated[
    str | None, typer.Option("--dtype", help="override the config's dtype (float32, float64, bfloat16, float16)")
]

ExecutorOption = Annotated[
    str,
    typer.Option("--executor", help="where shards are computed: local (this process) or ray (Ray actors, one model each)"),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address", metavar="ADDR",
        help="Ray cluster to run on (e.g. auto, or ray://host:10001); default: start a local cluster",
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1,
        help="Ray actors (each loads the model once); default: one per GPU, or per CPU, of the cluster (2 on a local one)",
    ),
]


def on_workers(executor: str) -> bool:
    """Whether ``--executor`` leaves the device check to its workers (``load_config(device_on_workers=)``)."""
    return executor == "ray"


def overrides(sets: list[str] | None, **flags: str | None) -> dict[str, object]:
    """The ``--set`` overrides, then each flag given (``device=...``) on top of them."""
    return {**parse_overrides(sets or []), **{key: value for key, value in flags.items() if value is not None}}


def fail(error: Exception) -> NoReturn:
    """Print ``error`` and exit with status 2."""
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(code=2)


def table_number(value: float | None, digits: int = 3) -> str:
    """A number for a command's results table: ``digits`` decimals, "—" for a missing or NaN value."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
