"""``python -m autoflow``: the same CLI as the ``autoflow`` command."""

from autoflow.cli import app

app(prog_name="autoflow")
