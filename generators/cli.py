"""``autoflow generate fit | sample | report``: synthesize workloads from a real trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from autoflow import jsonsafe, trust
from autoflow.errors import AutoflowError, ConfigError
from autoflow.limits import FLAG_RANGES, check_flags, check_output_dir, check_output_file
from autoflow.traces import normalized
from autoflow.traces.registry import load_workload

from .models import DEFAULT_MODEL, MODELS

app = typer.Typer(help="Fit workload generators to real traces, sample synthetic workloads, "
                  "and report their fidelity.", no_args_is_help=True)
console = Console(stderr=True)


KNOB_STREAM = 0x6B6E6F62  # the knobs' random stream: seeded by (--seed, this), not --seed


def _range(flag: str) -> str:
    """The valid range of a flag, for its --help (docs/hardening.md lists them all)."""
    return f" Valid: {FLAG_RANGES[flag].describe()}."


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
    pipes = info.get("pipelines")
    left = sum((pipes or {}).get("left_out", {}).values()) + \
        info.get("workflows_not_learned", 0)
    learned = "" if pipes is None else (
        f" and {pipes['workflows']:,} pipelines ({pipes['stages']:,} stages in "
        f"{pipes['shapes']:,} shapes, {100 * pipes['job_share']:.1f}% of the jobs)")
    learned += f", {left:,} workflows left out" if left else ""
    jobs = {"independent jobs": "independent jobs", "stages": "stages as single jobs"}.get(
        info.get("attributes_fitted_on", ""), "jobs")
    console.print(f"fitted {info['model']} on {info['table']['used']:,} {jobs} "
                  f"({info['table']['unknown_duration']:,} without a duration left out)"
                  f"{learned} in {info['fit_seconds']:.1f} s -> {out}")


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
    duration_cv: Annotated[float | None, typer.Option(
        help="Target coefficient of variation of durations (std/mean): log-durations "
        "stretched around their median, mean kept; 0.5 is light-tailed, 3 heavy."
        + _range("--duration-cv"))] = None,
    burstiness: Annotated[float | None, typer.Option(
        help="Coefficient of variation of the gaps between arrivals (1: Poisson, > 1: "
        "bursts): arrivals redrawn as a gamma renewal process at the same mean rate."
        + _range("--burstiness"))] = None,
    sweep_share: Annotated[float | None, typer.Option(
        help="Share of jobs that follow a leader in runs of similar jobs (sweeps): same "
        "GPUs, kind, user, duration within about 20%, submitted about a minute apart."
        + _range("--sweep-share"))] = None,
    sweep_len: Annotated[float | None, typer.Option(
        help="Mean jobs per run, the leader included (default 5; below 2 counts as 2); "
        "needs --sweep-share." + _range("--sweep-len"))] = None,
    gpu_mix: Annotated[str | None, typer.Option(
        metavar="GPUS:P,...", help="Draw the GPU count of training jobs from this mix, e.g. "
        "1:0.6,2:0.1,4:0.2,8:0.1 (whole GPU counts, probabilities that sum to 1).")] = None,
) -> None:
    """Sample a synthetic workload; `bench --trace csv:FILE` and `train` read it.
    The shape knobs (--duration-cv, --burstiness, --sweep-share, --sweep-len, --gpu-mix)
    change the sample on purpose, seeded from --seed."""
    from .conditions import parse_condition
    from .generator import load_generator
    from .knobs import Knobs, apply_knobs, parse_gpu_mix

    try:
        if n < 1:
            raise ConfigError(f"-n must be at least 1, got {n}")
        check_flags(n=n, load_scale=load_scale, seed=seed, duration_cv=duration_cv,
                    burstiness=burstiness, sweep_share=sweep_share, sweep_len=sweep_len)
        if sweep_len is not None and sweep_share is None:
            raise ConfigError("--sweep-len needs --sweep-share (the share of jobs in runs)")
        knobs = Knobs(duration_cv=duration_cv, burstiness=burstiness, sweep_share=sweep_share,
                      sweep_len=5.0 if sweep_len is None else sweep_len,
                      gpu_mix=None if gpu_mix is None else parse_gpu_mix(gpu_mix))
        check_output_file(out)
        conds = [parse_condition(c) for c in condition or []]
        trust.allow_all(trust_file)
        gen = load_generator(model)
        w = gen.sample(n, seed=seed, load_scale=load_scale, conditions=conds)
        if knobs != Knobs():
            w = apply_knobs(w, knobs, np.random.default_rng([seed, KNOB_STREAM]))
        normalized.write(w, out)
    except AutoflowError as e:
        _fail(e)
    except OSError as e:  # e.g. a disk that filled up while writing
        _fail(f"{e.filename or ''}: {e.strerror or e}")
    from .pipelines import count

    shaped = f" shaped by {knobs.label()}" if knobs != Knobs() else ""
    c = count(w.jobs)
    piped = "" if gen.pipelines is None else \
        f", {c['workflows']:,} pipelines of {c['stages']:,} jobs among them"
    console.print(f"sampled {len(w):,} jobs{piped} from {gen.model_name} ({gen.source})"
                  f"{shaped} -> {out}")


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
    line = {"sdv_quality_score": None if score is None else round(score, 3),
            "duration_ratio": {k: round(v, 3) for k, v in d.items()},
            "gpu_count_max_diff_pp": round(g["max_abs_diff_pp"], 2),
            "hourly_correlation": round(h["correlation"], 3)}
    p = rep["pipelines"]
    if p["real"]["workflows"] or p["synthetic"]["workflows"]:
        line["pipelines"] = {k: p[k]["workflows"] for k in ("real", "synthetic")}
        line["pipeline_share_diff_pp"] = round(p["job_share_diff_pp"], 2)
    typer.echo(jsonsafe.dumps({**line, "bar": rep["bar"]}, indent=None))
    console.print("wrote " + ", ".join(str(f) for f in files))
