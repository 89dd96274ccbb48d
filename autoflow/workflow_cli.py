"""``autoflow workflows``: check a workflow template, expand it into runs for simulation."""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import AutoflowError

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command("check")
def check(path: Path = typer.Argument(..., help="A workflow template (YAML).")) -> None:
    """Check a template and print its stages, in order."""
    from .cli import err, fail
    from .workflow_file import load

    try:
        t = load(path)
    except AutoflowError as e:
        fail(e)
    every = f"every {t.every_s:g} s at +{t.at_s:g} s" if t.every_s else "ad hoc"
    err.print(f"{t.name}: {len(t.stages)} stages, {every}")
    for s in t.stages:
        f = s.fields
        share = f.get("gpu_milli", 1000)
        what = (f"{f.get('num_gpus', 1)} GPU(s)"
                + (f" x {share}/1000 (shared)" if share < 1000 else "")
                if f.get("num_gpus", 1) else f"CPU only ({f.get('cpu_milli', 0)} mCPU)")
        reps = f" x{s.replicas}" if s.replicas > 1 else ""
        deps = f" after {', '.join(s.depends_on)}" if s.depends_on else ""
        hint = f", about {s.duration_hint_s:g} s" if s.duration_hint_s else ""
        print(f"{s.name}{reps}: {f.get('kind', 'training')}, {what}{hint}{deps}")


@app.command("expand")
def expand(path: Path = typer.Argument(..., help="A workflow template (YAML)."),
           runs: int = typer.Option(30, help="Runs of the template, on its schedule."),
           seed: int = typer.Option(0, help="Seed of the durations drawn around the hints."),
           out: Path = typer.Option(..., "--out", help="The normalized CSV to write "
                                    "(workflow_id and depends_on columns included).")
           ) -> None:
    """Write RUNS runs of a template as a normalized job CSV, true durations drawn
    around each stage's hint, for autoflow bench / train (csv:OUT)."""
    from .cli import err, fail
    from .traces import normalized
    from .workflow_file import expand as expand_runs
    from .workflow_file import load
    from .workload import Workload

    try:
        if seed < 0:
            raise AutoflowError(f"--seed must be >= 0, got {seed}")
        t = load(path)
        jobs = expand_runs(t, runs, seed)
        normalized.write(Workload(jobs, source=str(path)), out)
    except AutoflowError as e:
        fail(e)
    err.print(f"wrote {out}: {runs} runs of {t.name}, {len(jobs)} jobs")
