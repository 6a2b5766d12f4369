"""``python -m interp`` runs the ``interp`` command line."""

from interp.cli import app

app()
