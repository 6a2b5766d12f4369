"""The ``interp`` command line: batch patching sweeps, steering runs, the runs store, and the demo.

Sub-commands that belong to one method live next to its code and are mounted here. Every command's
errors end in one line (:mod:`interp.cli_errors`); ``interp --debug COMMAND`` shows the traceback.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from interp.cli_errors import DEBUG_KEY, ErrorHandlingGroup
from interp.cli_options import (
    AddressOption, DebugOption, DeviceOption, DtypeOption, ExecutorOption, ResumeOption, RunsOption, SetOption, WorkersOption,
    fail, on_workers, overrides,
)
from interp.errors import InterpError

app = typer.Typer(
    cls=ErrorHandlingGroup, help="Mechanistic interpretability workbench.", no_args_is_help=True,
    add_completion=False, pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def main(ctx: typer.Context, debug: DebugOption = False) -> None:
    """Mechanistic interpretability workbench."""
    ctx.meta[DEBUG_KEY] = debug


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=console,
    )


@app.command()
def sites(model: str = typer.Argument("smollm2-135m", help="model name or path")) -> None:
    """List the sites of a model, in forward order."""
    from interp.models import load_model

    try:
        loaded = load_model(model)
    except InterpError as error:
        fail(error)
    console.print(repr(loaded))
    for name in loaded.sites:
        console.print(name)


@app.command()
def patch(
    config: Path = typer.Argument(..., help="YAML or TOML sweep config (see data/*.yaml)"),
    resume: ResumeOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    set_: SetOption = None,
    runs: RunsOption = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
) -> None:
    """Run the activation patching sweeps of CONFIG into the runs store (resumable, locally or on Ray)."""
    from interp.config import load_config
    from interp.patching.config import PatchConfig
    from interp.patching.runner import run_config
    from interp.runs import RunStore

    try:
        settings = load_config(
            config, PatchConfig, overrides(set_, device=device, dtype=dtype), device_on_workers=on_workers(executor)
        )
        store = RunStore(runs)
        with _progress() as bar:
            task_id = bar.add_task("patching cells" if executor == "local" else "patching cells (ray shards)", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task_id, completed=done, total=total)

            run = run_config(
                settings, store, resume=resume, progress=advance, executor=executor, address=address, workers=workers
            )
    except InterpError as error:
        fail(error)
    summary = run.manifest.get("summary", {})
    table = Table(title=f"run {run.id}")
    for column in ("result", "forwards", "FLOP fraction", "seconds", "top cell (normalised)"):
        table.add_column(column)
    for name, numbers in summary.items():
        top = numbers["top_cells"][0] if numbers["top_cells"] else {}
        table.add_row(
            name, str(int(numbers["forward_passes"])), f"{numbers['flop_fraction']:.3f}", f"{numbers['seconds']:.1f}",
            ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in top.items()),
        )
    console.print(table)
    console.print(f"wrote {run.path}")
    console.print(f"browse it with: interp app --runs {store.root}")


@app.command("runs")
def list_runs(
    kind: str = typer.Option(None, "--kind", help="only runs of this kind (patching, sae, ...)"),
    runs: RunsOption = None,
) -> None:
    """List the runs in the store, newest first."""
    from interp.runs import RunStore

    store = RunStore(runs)
    problem = store.root_problem()
    if problem:
        fail(problem)
    infos = store.list(kind=kind)
    table = Table(title=str(store.root))
    table.add_column("id", no_wrap=True, min_width=max((len(i.id) for i in infos), default=2))
    for column in ("kind", "status", "model", "dataset", "created", "error"):
        table.add_column(column, overflow="fold")
    for info in infos:
        model = info.model.get("name") if isinstance(info.model, dict) else info.model
        dataset = info.dataset.get("name") if isinstance(info.dataset, dict) else info.dataset
        table.add_row(info.id, str(info.kind), info.status, str(model), str(dataset), str(info.created), info.error or "")
    console.print(table)


def _mount() -> None:
    """Commands that live next to their method's code."""
    from interp.app_cli import app as app_command
    from interp.attribution.cli import attribute
    from interp.concepts.cli import tcav
    from interp.sae.cli import app as sae_app
    from interp.steering.cli import steer

    app.command("app")(app_command)
    app.command("attribute")(attribute)
    app.command("steer")(steer)
    app.command("tcav")(tcav)
    app.add_typer(sae_app, name="sae")


_mount()

if __name__ == "__main__":
    app()
