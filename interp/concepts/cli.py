"""``interp tcav CONFIG``: CAVs, TCAV and significance tests from a config file, into the runs store.

:mod:`interp.cli` mounts :func:`tcav`. It validates the config before any work, shows the stages
as they finish, writes a run of kind ``"tcav"`` and prints, per concept, the layers where its TCAV
score differs significantly from random concepts (Bonferroni across layers and concepts).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from interp.cli_options import DeviceOption, DtypeOption, ResumeOption, RunsOption, SetOption, fail, overrides
from interp.errors import InterpError

console = Console()


def tcav(
    config: Path = typer.Argument(..., help="YAML or TOML TCAV config (see data/tcav_demo.yaml)"),
    resume: ResumeOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    set_: SetOption = None,
    runs: RunsOption = None,
) -> None:
    """Train CAVs for CONFIG's concepts at every layer, score them with TCAV and test them against random concepts."""
    from interp.concepts.config import TCAVConfig
    from interp.concepts.runner import run_config
    from interp.config import load_config
    from interp.runs import RunStore

    try:
        settings = load_config(config, TCAVConfig, overrides(set_, device=device, dtype=dtype))
        store = RunStore(runs)
        progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(), console=console)
        with progress:
            bar = progress.add_task("loading model and data", total=None)
            run, result = run_config(settings, store, lambda stage: progress.update(bar, description=stage), resume)
    except InterpError as error:
        fail(error)
    table = Table(title=f"TCAV run {run.id}: concept vs random (sign_count)")
    for column in ("concept", "layer", "TCAV", "random", "p (t)", "p (perm)", "p (Bonf.)", "probe acc", "significant"):
        table.add_column(column)
    for row in result.tests.itertuples():
        table.add_row(
            row.concept, str(row.layer), f"{row.concept_mean:.3f}", f"{row.random_mean:.3f}", f"{row.p_t:.2g}",
            f"{row.p_perm:.2g}", f"{row.p_bonferroni:.2g}", f"{row.accuracy:.2f}", "yes" if row.significant else "",
        )
    console.print(table)
    console.print(f"wrote {run.path}")
    console.print(f"browse it with: interp app --runs {store.root}")
