"""``autoflow predictor fit | eval``: the duration predictor and its baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from autoflow import jsonsafe, manifest
from autoflow.errors import AutoflowError, ConfigError
from autoflow.limits import check_flags, check_output_dir
from autoflow.traces.registry import load_workload

from . import features as F
from . import metrics, models

app = typer.Typer(help="Fit and evaluate duration predictors (quantiles of a job's "
                  "remaining run time).", no_args_is_help=True)


def _fail(e: Exception | str) -> None:
    typer.secho(f"error: {' '.join(str(e).split())}", fg="red", err=True)
    raise typer.Exit(2)


def training_examples(sources: list[str], *, seed: int, max_examples: int | None = None):
    """Examples of each source (features computed per trace), concatenated."""
    parts = []
    for i, s in enumerate(sources):
        w = load_workload(s)
        if not len(w):
            raise ConfigError(f"--trace {s}: the trace holds no jobs")
        parts.append(F.examples(w, seed=seed + i))
    ex = F.Examples.concat(parts)
    if not len(ex):
        raise ConfigError("--trace: no job with a known (uncensored) duration to learn from")
    if max_examples and len(ex) > max_examples:
        ex = ex.take(np.sort(np.random.default_rng([seed, 1]).choice(
            len(ex), max_examples, replace=False)))
    return ex


def label_subset(ex: F.Examples, fraction: float, seed: int) -> F.Examples:
    """``fraction`` of the examples (at least 2), drawn at random with ``seed``."""
    k = max(2, round(fraction * len(ex)))
    if k >= len(ex):
        return ex
    idx = np.random.default_rng([seed, 2]).choice(len(ex), k, replace=False)
    return ex.take(np.sort(idx))


def fit_predictor(sources: list[str], *, kind: str = "mlp", encoder: str | None = None,
                  label_fraction: float = 1.0, seed: int = 0, params: dict | None = None,
                  max_examples: int | None = None) -> models.Predictor:
    if kind not in models.KINDS:
        raise ConfigError(f"--model-kind must be one of {', '.join(models.KINDS)}, got {kind!r}")
    if not 0 < label_fraction <= 1:
        raise ConfigError(f"--label-fraction must be in (0, 1], got {label_fraction}")
    if kind == "gbm" and encoder is not None:
        raise ConfigError("--encoder is for --model-kind mlp; gbm takes --encoder none")
    if encoder is not None:
        models.load_encoder(encoder)  # a missing or bad encoder fails before the work
    ex = training_examples(sources, seed=seed, max_examples=max_examples)
    lab = label_subset(ex, label_fraction, seed)
    info = {"trace": sources if len(sources) > 1 else sources[0],
            "label_fraction": label_fraction, "examples": len(ex), "labelled": len(lab)}
    if kind == "gbm":
        return models.fit_gbm(lab, seed=seed, params=params, info=info)
    return models.fit_mlp(lab, seed=seed, encoder=encoder, params=params, info=info)


def evaluate_on(model: str | Path, source: str, seed: int = 0) -> dict:
    """The scores of ``model`` (a folder, or ``history``) on ``source``'s examples."""
    w = load_workload(source)
    ex = F.examples(w, seed=seed)
    if str(model) == "history":
        pred = models.history_predict(w, ex)
        name = "history"
    else:
        p = models.load(model)
        pred = p.predict(ex.x) if len(ex) else np.zeros((0, len(models.QUANTILES)))
        name = p.kind
    submit = np.array([w.jobs[i].submit_time for i in ex.job], dtype=np.float64)
    return {**metrics.evaluate(pred, ex.y, submit, ex.attained), "model": name,
            "trace": source}


@app.command()
def fit(
    trace: Annotated[list[str], typer.Option(help="Training trace SOURCE (FORMAT:PATH or "
                                             "builtin:NAME); repeatable.")],
    out: Annotated[Path, typer.Option(help="Model folder to write (model.json, weights, "
                                      "manifest.json).")],
    encoder: Annotated[str, typer.Option(help="Pretrained encoder folder (encoder.pt + "
                                         "encoder.json) as the MLP's trunk, or none: the "
                                         "same network from scratch.")] = "none",
    label_fraction: Annotated[float, typer.Option(help="Share of the examples whose label "
                                                  "is used, in (0, 1], drawn with --seed.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the draws and the training.")] = 0,
    model_kind: Annotated[str, typer.Option(help="mlp (quantile network) or gbm (gradient-"
                                            "boosted trees, sklearn's LightGBM-style "
                                            "histogram GBM).")] = "mlp",
    epochs: Annotated[int, typer.Option(help="MLP passes over the labelled examples.")] = 0,
    max_examples: Annotated[int, typer.Option(help="Cap on examples before labelling "
                                              "(0: all).")] = 0,
) -> None:
    """Fit a duration predictor on decision-time examples of the traces."""
    try:
        check_flags(seed=seed)
        if epochs < 0 or max_examples < 0:
            raise ConfigError("--epochs and --max-examples must be >= 0")
        check_output_dir(out)
        enc = None if encoder.strip().lower() == "none" else encoder
        params = {"epochs": epochs} if epochs and model_kind == "mlp" else None
        p = fit_predictor(list(trace), kind=model_kind, encoder=enc,
                          label_fraction=label_fraction, seed=seed, params=params,
                          max_examples=max_examples or None)
        p.save(out)
        config = {"trace": list(trace), "encoder": encoder, "label_fraction": label_fraction,
                  "model_kind": model_kind, "epochs": epochs, "max_examples": max_examples,
                  "out": str(out)}
        manifest.write(out / "manifest.json",
                       manifest.build("autoflow predictor fit", config, seed))
    except AutoflowError as e:
        _fail(e)
    except OSError as e:
        _fail(f"{e.filename or ''}: {e.strerror or e}")
    typer.secho(f"fitted {p.kind} on {p.meta['labelled']:,} of {p.meta['examples']:,} "
                f"examples -> {out}", err=True)


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="Model folder from `predictor fit`, or history "
                                       "(the history estimator over completed jobs).")],
    trace: Annotated[str, typer.Option(help="Trace SOURCE to score on.")],
    seed: Annotated[int, typer.Option(help="Seed of the attained levels drawn.")] = 0,
) -> None:
    """Score a predictor on a trace: JSON with spearman, mae_log, pinball, n on stdout."""
    try:
        check_flags(seed=seed)
        result = evaluate_on(model, trace, seed=seed)
    except AutoflowError as e:
        _fail(e)
    typer.echo(jsonsafe.dumps(result))
