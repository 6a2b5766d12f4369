"""``interp attribute CONFIG``: attribution methods against exact patching, from a config file.

:mod:`interp.cli` mounts :func:`attribute` on the main app. It
validates the config before any work (errors name the offending key), shows a progress bar over
the exact sweeps and the methods, writes a run of kind ``"attribution"`` and prints the agreement
table (Pearson r, Spearman r, top-k recall, sign agreement, passes, seconds).
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
from interp.errors import InterpError, InvalidArgumentError

console = Console()



def attribute(
    config: Path = typer.Argument(..., help="YAML or TOML attribution config (see data/ioi_attribution.yaml)"),
    resume: ResumeOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    set_: SetOption = None,
    runs: RunsOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
) -> None:
    """Compare AtP, AtP*, RelP and IG with exact activation patching on CONFIG's task and sweeps.

    The exact sweeps' shards and the methods run in this process, or on Ray actors with --executor
    ray. A config with ``kind: feature_circuit`` (see data/feature_circuit_demo.yaml) attributes
    over SAE latents and error nodes instead, and measures each method's circuit faithfulness (in
    this process only).
    """
    from interp.attribution.config import AttributionConfig
    from interp.attribution.runner import run_attribution, stages
    from interp.config import load_config, read_mapping
    from interp.runs import RunStore

    try:
        if read_mapping(config).get("kind") == "feature_circuit":
            if executor != "local":
                raise InvalidArgumentError("a feature-circuit config runs in this process only; drop --executor")
            _feature_circuit(config, resume, overrides(set_, device=device, dtype=dtype), runs)
            return
        settings = load_config(
            config, AttributionConfig, overrides(set_, device=device, dtype=dtype), device_on_workers=on_workers(executor)
        )
        store = RunStore(runs)
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        )
        with progress:
            bar = progress.add_task("exact sweeps and approximations", total=stages(settings))

            def advance(stage: str) -> None:
                progress.update(bar, advance=1, description=f"done: {stage}")

            run, comparison = run_attribution(settings, store, advance, resume, executor, address, workers)
    except InterpError as error:
        fail(error)
    table = Table(title=f"attribution vs exact patching, run {run.id}")
    columns = ("component", "method", "cells", "Pearson r", "Spearman r", "recall@k", "sign", "passes F+B", "s",
               "exact F", "exact s")
    for column in columns:
        table.add_column(column)
    for row in comparison.table.itertuples():
        table.add_row(
            row.component, row.method, str(row.cells), table_number(row.pearson), table_number(row.spearman),
            table_number(row.recall, 2), table_number(row.sign_agreement, 2), f"{row.forward_passes}+{row.backward_passes:g}",
            f"{row.seconds:.1f}", str(row.exact_forward_passes), f"{row.exact_seconds:.1f}",
        )
    console.print(table)
    console.print(f"wrote {run.path}")


def _feature_circuit(config: Path, resume: str | None, given: dict, runs: Path | None) -> None:
    """Run a feature-circuit config and print each method's faithfulness curve and cost."""
    from interp.attribution.circuit import FeatureCircuitConfig, run_feature_circuit
    from interp.config import load_config
    from interp.runs import RunStore

    settings = load_config(config, FeatureCircuitConfig, given)
    store = RunStore(runs)
    stages = len(settings.methods) + 2
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    with progress:
        bar = progress.add_task("attribution, exact patching, faithfulness", total=stages)
        run = run_feature_circuit(settings, store, lambda stage: progress.update(bar, advance=1, description=f"done: {stage}"),
                                  resume)
    curves = run.read_table("faithfulness")
    costs = run.read_table("costs").set_index("method")
    table = Table(title=f"feature-circuit faithfulness, run {run.id}")
    sizes = sorted(curves["nodes"].unique())
    table.add_column("method")
    table.add_column("passes")
    for size in sizes:
        table.add_column(f"N={size}")
    for method, rows in curves.groupby("method", sort=False):
        by_size = rows.set_index("nodes")["faithfulness"]
        table.add_row(str(method), f"{costs.loc[method, 'passes']:.0f}", *[table_number(by_size[s], 2) for s in sizes])
    console.print(table)
    console.print(f"wrote {run.path}")
