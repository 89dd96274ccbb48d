"""``autoflow traces ...``: inspect, convert and download traces; list the formats.

Errors that the user can fix (bad rows, missing files, unknown names, failed
downloads) are printed as one red ``error: ...`` line on stderr, exit code 2.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .. import jsonsafe
from ..errors import AutoflowError
from ..limits import check_flags, check_output_file
from . import normalized
from .builtin import BUILTIN_NAMES
from .registry import FORMATS, load_workload
from .summary import describe, render

app = typer.Typer(help="Import, inspect, convert and download GPU-cluster traces. A trace "
                  "SOURCE is FORMAT:PATH (e.g. itp:cluster08.csv) or builtin:NAME.",
                  no_args_is_help=True)

SkipOpt = Annotated[bool, typer.Option("--skip-bad-rows",
                                       help="Count malformed rows by reason instead of "
                                       "stopping at the first one.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for builtin (generated) workloads.")]


def _fail(message: str) -> None:
    typer.secho(f"error: {' '.join(message.split())}", fg="red", err=True)
    raise typer.Exit(2)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except AutoflowError as e:
        _fail(str(e))
    except OSError as e:  # e.g. an output folder that cannot be written
        _fail(f"{e.filename or ''}: {e.strerror or e}")


@app.command()
def inspect(source: Annotated[str, typer.Argument(help="FORMAT:PATH or builtin:NAME")],
            skip_bad_rows: SkipOpt = False,
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
            seed: SeedOpt = 0) -> None:
    """Import a trace and summarize it (jobs, mix, durations, what was skipped and why)."""
    with _user_errors():
        check_flags(seed=seed)
        desc = describe(load_workload(source, skip_bad_rows=skip_bad_rows, seed=seed))
    if as_json:
        typer.echo(jsonsafe.dumps(desc))
    else:
        Console().print(render(desc))


@app.command()
def convert(source: Annotated[str, typer.Argument(help="FORMAT:PATH or builtin:NAME")],
            out: Annotated[Path, typer.Option("--out", help="Normalized CSV to write.")],
            skip_bad_rows: SkipOpt = False, seed: SeedOpt = 0) -> None:
    """Import a trace and write it as autoflow's normalized CSV (format ``csv``)."""
    with _user_errors():
        check_flags(seed=seed)
        check_output_file(out)
        w = load_workload(source, skip_bad_rows=skip_bad_rows, seed=seed)
        normalized.write(w, out)
    skipped = w.summary.rows_skipped
    typer.echo(f"wrote {len(w)} jobs to {out}" + (f" ({skipped} rows skipped)" if skipped
                                                   else "") + f"; use csv:{out}")


@app.command()
def download(name: Annotated[str, typer.Argument(help="Trace name (see 'formats').")],
             dest: Annotated[Path | None, typer.Option(
                 help="Folder (default $AUTOFLOW_CACHE/NAME or ~/.cache/autoflow/traces/NAME)"
             )] = None,
             mirror: Annotated[str | None, typer.Option(
                 help="Base URL serving OWNER/REPO/PATH (default GitHub; env "
                 "AUTOFLOW_TRACE_MIRROR).")] = None) -> None:
    """Download a public trace, verify its checksums, print the sources to pass."""
    from .download import download as fetch_trace

    with _user_errors():
        fetch_trace(name, dest=dest, mirror=mirror)


@app.command()
def formats() -> None:
    """List the trace formats, the builtin workloads and the downloadable traces."""
    from .download import CATALOG

    table = Table(title="trace formats (SOURCE = FORMAT:PATH)", title_justify="left")
    table.add_column("format", style="bold")
    table.add_column("what")
    for fmt, module in FORMATS.items():
        doc = importlib.import_module(f".{module}", __package__).__doc__ or ""
        first = " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "")
        table.add_row(fmt, first)
    console = Console()
    console.print(table)
    console.print("builtin workloads: " + ", ".join(f"builtin:{n}" for n in BUILTIN_NAMES)
                  + " (NAME:JOBS sets the job count)", highlight=False)
    console.print("downloadable (autoflow traces download NAME): " + ", ".join(CATALOG),
                  highlight=False)
