"""The ``interp`` command line.

Sub-commands live next to the code they drive and are mounted here.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Mechanistic interpretability workbench.", no_args_is_help=True, add_completion=False)


@app.command()
def sites(model: str = typer.Argument("smollm2-135m", help="model name or path")) -> None:
    """List the sites of a model, in forward order."""
    from interp.models import load_model

    loaded = load_model(model)
    typer.echo(repr(loaded))
    for name in loaded.sites:
        typer.echo(name)


if __name__ == "__main__":
    app()
