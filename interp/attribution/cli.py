"""``interp attribute CONFIG``: attribution methods against exact patching, from a config file.

The lead mounts :func:`attribute` on the main app (``app.command("attribute")(attribute)``). It
validates the config before any work (errors name the offending key), shows a progress bar over
the exact sweeps and the methods, writes a run of kind ``"attribution"`` and prints the agreement
table (Pearson r, Spearman r, top-k recall, sign agreement, passes, seconds).
"""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from interp.errors import InterpError

console = Console()


def _number(value: float, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def attribute(
    config: Path = typer.Argument(..., help="YAML or TOML attribution config (see data/ioi_attribution.yaml)"),
    device: str = typer.Option(None, "--device", help="override the config's device (cpu, cuda, cuda:1)"),
    dtype: str = typer.Option(None, "--dtype", help="override the config's dtype (float32, float64, bfloat16)"),
    out: Path = typer.Option(None, "--out", help="runs root (default: $INTERP_RUNS_DIR or data/runs)"),
) -> None:
    """Compare AtP, AtP*, RelP and IG with exact activation patching on CONFIG's task and sweeps."""
    from interp.attribution.config import load_attribution_config
    from interp.attribution.runner import run_attribution, stages
    from interp.runs import RunStore

    try:
        settings = load_attribution_config(config, {"device": device, "dtype": dtype})
        store = RunStore(out)
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        )
        with progress:
            bar = progress.add_task("exact sweeps and approximations", total=stages(settings))

            def advance(stage: str) -> None:
                progress.update(bar, advance=1, description=f"done: {stage}")

            run, comparison = run_attribution(settings, store, advance)
    except (InterpError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    table = Table(title=f"attribution vs exact patching, run {run.id}")
    columns = ("component", "method", "cells", "Pearson r", "Spearman r", "recall@k", "sign", "passes F+B", "s",
               "exact F", "exact s")
    for column in columns:
        table.add_column(column)
    for row in comparison.table.itertuples():
        table.add_row(
            row.component, row.method, str(row.cells), _number(row.pearson), _number(row.spearman),
            _number(row.recall, 2), _number(row.sign_agreement, 2), f"{row.forward_passes}+{row.backward_passes:g}",
            f"{row.seconds:.1f}", str(row.exact_forward_passes), f"{row.exact_seconds:.1f}",
        )
    console.print(table)
    console.print(f"wrote {run.path}")
