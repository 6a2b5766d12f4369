"""``interp steer CONFIG``: steering runs from a config file (``kind: vectors``, ``dac`` or ``function_vectors``).

:mod:`interp.cli` mounts :func:`steer` on the main app. The config is validated before any work
(errors name the offending key), a progress bar follows the sweep, and the effect-versus-KL table
(or the DAC intensities) is printed at the end.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from interp.cli_options import (
    AddressOption,
    DeviceOption,
    DtypeOption,
    ExecutorOption,
    ResumeOption,
    RunsOption,
    SetOption,
    WorkersOption,
    fail,
    on_workers,
    overrides,
    table_number,
)
from interp.errors import InterpError

console = Console()



def steer(
    config: Path = typer.Argument(..., help="YAML or TOML steering config (see data/steer_demo.yaml)"),
    resume: ResumeOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    set_: SetOption = None,
    runs: RunsOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
) -> None:
    """Build steering vectors and sweep their strength, run DAC, or find function vectors, as CONFIG's ``kind`` says.

    A function-vector run computes its head sweep and its accuracy sweep by layer in this process,
    or on Ray actors with --executor ray.
    """
    from interp.runs import RunStore
    from interp.steering.config import load_steer_config
    from interp.steering.runner import run_config

    try:
        settings = load_steer_config(config, overrides(set_, device=device, dtype=dtype), on_workers(executor))
        store = RunStore(runs)
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        )
        with progress:
            bar = progress.add_task(f"steering ({settings.kind})", total=None)  # type: ignore[attr-defined]

            def advance(done: int, total: int) -> None:
                progress.update(bar, completed=done, total=total)

            run = run_config(settings, store, resume, advance, executor, address, workers)
    except InterpError as error:
        fail(error)
    if run.kind == "steering":
        table = Table(title=f"effect vs KL, run {run.id}")
        columns = ("layer", "strength", "kl", "kl_first", "entropy", "perplexity", "score", "score_delta")
        for column in columns:
            table.add_column(column)
        for row in run.read_table("sweep").to_dict("records"):
            table.add_row(*(str(row[c]) if c == "layer" else table_number(row.get(c, float("nan"))) for c in columns))
        console.print(table)
    elif run.kind == "dac":
        console.print(f"mean DAC intensity per property: {run.manifest.get('summary', {}).get('mean_alpha')}")
    else:
        table = Table(title=f"zero-shot accuracy by injection layer, run {run.id}")
        accuracy = run.read_table("accuracy")
        for column in accuracy.columns:
            table.add_column(str(column))
        for row in accuracy.to_dict("records"):
            table.add_row(*(table_number(v) if isinstance(v, float) else str(v) for v in row.values()))
        console.print(table)
    console.print(f"wrote {run.path}")
