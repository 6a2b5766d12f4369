"""``interp sae ...``: the SAE sub-commands (a Typer app the main CLI mounts).

* ``interp sae train CONFIG [--set KEY=VALUE] [--resume RUN] [--runs DIR]`` trains the SAEs a YAML or TOML
  config describes (:mod:`interp.sae.config`), writing a run of kind ``sae``;
* ``interp sae check CONFIG`` validates a config without running anything;
* ``interp sae info PATH`` prints an SAE directory's config (ours, SAELens's or sparsify's).
"""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli_errors import ErrorHandlingGroup
from interp.cli_options import ResumeOption, RunsOption, SetOption, fail, overrides
from interp.errors import InterpError

app = typer.Typer(
    cls=ErrorHandlingGroup, help="Sparse autoencoders: train, check configs, inspect saved SAEs.", no_args_is_help=True,
    add_completion=False, pretty_exceptions_enable=False,
)


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML or TOML training config, e.g. data/sae_topk.yaml"),
    resume: ResumeOption = None,
    set_: SetOption = None,
    runs: RunsOption = None,
    progress: bool = typer.Option(True, help="show the progress bar"),
    stop_after: int = typer.Option(None, help="stop after this many steps, resumable later with --resume"),
) -> None:
    """Train the SAEs described by CONFIG and store them, their metrics and feature statistics in a run."""
    from interp.config import load_config
    from interp.runs import RunStore
    from interp.sae.config import TrainConfig
    from interp.sae.pipeline import train as run_training

    try:
        parsed = load_config(config, TrainConfig, overrides(set_))
        run = run_training(parsed, RunStore(runs), resume=resume, progress=progress, stop_after=stop_after, log=typer.echo)
    except InterpError as error:
        fail(error)
    manifest = run.manifest
    typer.echo(f"run {run.id} ({manifest['status']}) at {run.path}")
    for name, numbers in (manifest.get("summary") or {}).items():
        if isinstance(numbers, dict):
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())
            typer.echo(f"  {name}: {shown}")


@app.command()
def check(
    config: Path = typer.Argument(..., help="YAML or TOML training config"), set_: SetOption = None
) -> None:
    """Validate CONFIG and print the resolved settings (steps, learning rates)."""
    from interp.config import load_config
    from interp.sae.config import TrainConfig
    from interp.sae.trainer import learning_rate

    try:
        parsed = load_config(config, TrainConfig, overrides(set_))
    except InterpError as error:
        fail(error)
    typer.echo(f"{config}: valid; {parsed.total_steps} steps of {parsed.store.batch_size} tokens")
    for spec in parsed.saes:
        peak = learning_rate(parsed.optim.model_copy(update={"warmup_steps": 0, "decay_steps": 0}), spec.d_sae, 0, 1)
        typer.echo(f"  {spec.name}: {spec.activation!r} at {spec.site}, d_sae {spec.d_sae}, peak lr {peak:.3g}")


@app.command()
def info(path: Path = typer.Argument(..., help="an SAE directory (ours, SAELens's or sparsify's)")) -> None:
    """Print what an SAE directory holds."""
    from interp.sae.io import load

    try:
        sae = load(path)
    except (InterpError, OSError) as error:
        fail(error)
    typer.echo(repr(sae))
    typer.echo(sae.config.model_dump_json(indent=2))
