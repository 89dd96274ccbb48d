"""``autoflow generate fit | sample | report``: synthesize workloads from a real trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autoflow import jsonsafe, trust
from autoflow.errors import AutoflowError, ConfigError
from autoflow.limits import check_flags, check_output_dir, check_output_file
from autoflow.traces import normalized
from autoflow.traces.registry import load_workload

from .models import DEFAULT_MODEL, MODELS

app = typer.Typer(help="Fit workload generators to real traces, sample synthetic workloads, "
                  "and report their fidelity.", no_args_is_help=True)
console = Console(stderr=True)


def _fail(e: Exception) -> None:
    typer.secho(f"error: {' '.join(str(e).split())}", fg="red", err=True)
    raise typer.Exit(2)


@app.command()
def fit(
    trace: Annotated[str, typer.Option(help="Real trace SOURCE (FORMAT:PATH or builtin:NAME).")],
    out: Annotated[Path, typer.Option(help="Generator file to write.")],
    model: Annotated[str, typer.Option(help=f"One of {', '.join(MODELS)}; copula falls back "
                                       "to empirical without SDV.")] = DEFAULT_MODEL,
    seed: Annotated[int, typer.Option(help="Seed of the fit.")] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs of ctgan/tvae (0: SDV's "
                                        "default, 300).")] = 0,
) -> None:
    """Fit a generator (job attributes and arrivals) to a real trace."""
    from .generator import fit_generator

    try:
        if model not in MODELS:
            raise ConfigError(f"unknown generator model {model!r}; known: {', '.join(MODELS)}")
        check_flags(seed=seed, epochs=epochs)
        check_output_file(out)  # before the fit, which may take long
        w = load_workload(trace)
        with console.status(f"fitting {model} to {len(w):,} jobs"):
            gen = fit_generator(w, model, seed=seed, epochs=epochs or None, source=trace)
        gen.save(out)
    except AutoflowError as e:
        _fail(e)
    except OSError as e:  # e.g. a disk that filled up while writing
        _fail(f"{e.filename or ''}: {e.strerror or e}")
    info = gen.describe()
    console.print(f"fitted {info['model']} on {info['table']['used']:,} jobs "
                  f"({info['table']['unknown_duration']:,} without a duration left out) in "
                  f"{info['fit_seconds']:.1f} s -> {out}")


@app.command()
def sample(
    model: Annotated[Path, typer.Option(help="Generator file from `autoflow generate fit`.")],
    n: Annotated[int, typer.Option("-n", help="Number of jobs.")],
    out: Annotated[Path, typer.Option(help="Normalized workload CSV to write (format csv).")],
    load_scale: Annotated[float, typer.Option(help="Multiply the arrival rate (the job mix is "
                                              "unchanged).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    condition: Annotated[list[str] | None, typer.Option(
        "--condition", help="COL OP VALUE[@FRACTION], repeatable: kind=inference (only "
        "inference jobs), num_gpus>=2@0.3 (30% multi-GPU jobs).")] = None,
    trust_file: Annotated[list[Path] | None, typer.Option(
        "--trust-file", metavar="PATH", help="Unpickle this generator even though autoflow "
        "did not record writing it (an SDV model from elsewhere): only if you trust its "
        "author; a pickle can run code.")] = None,
) -> None:
    """Sample a synthetic workload; `bench --trace csv:FILE` and `train` read it."""
    from .conditions import parse_condition
    from .generator import load_generator

    try:
        if n < 1:
            raise ConfigError(f"-n must be at least 1, got {n}")
        check_flags(n=n, load_scale=load_scale, seed=seed)
        check_output_file(out)
        conds = [parse_condition(c) for c in condition or []]
        trust.allow_all(trust_file)
        gen = load_generator(model)
        w = gen.sample(n, seed=seed, load_scale=load_scale, conditions=conds)
        normalized.write(w, out)
    except AutoflowError as e:
        _fail(e)
    except OSError as e:  # e.g. a disk that filled up while writing
        _fail(f"{e.filename or ''}: {e.strerror or e}")
    console.print(f"sampled {len(w):,} jobs from {gen.model_name} ({gen.source}) -> {out}")


@app.command()
def report(
    real: Annotated[str, typer.Option(help="Real trace SOURCE.")],
    synthetic: Annotated[Path, typer.Option(help="Synthetic workload CSV (from `sample`).")],
    out: Annotated[Path, typer.Option(help="Folder for report.json and the plots.")],
) -> None:
    """Compare a synthetic workload with the real trace: SDV's quality score and what it
    misses (tails, GPU counts, kinds, hourly arrivals), as JSON and PNG."""
    from .report import fidelity, write_report

    try:
        check_output_dir(out)
        r = load_workload(real)
        s = load_workload(f"csv:{synthetic}")
        rep = fidelity(r, s)
        files = write_report(rep, r, s, out)
    except AutoflowError as e:
        _fail(e)
    except OSError as e:  # e.g. a disk that filled up while writing
        _fail(f"{e.filename or ''}: {e.strerror or e}")
    d, g, h = rep["durations"]["ratio"], rep["gpu_counts"], rep["hourly"]
    score = rep["sdv_quality_score"]
    typer.echo(jsonsafe.dumps({
        "sdv_quality_score": None if score is None else round(score, 3),
        "duration_ratio": {k: round(v, 3) for k, v in d.items()},
        "gpu_count_max_diff_pp": round(g["max_abs_diff_pp"], 2),
        "hourly_correlation": round(h["correlation"], 3), "bar": rep["bar"]}, indent=None))
    console.print("wrote " + ", ".join(str(f) for f in files))
