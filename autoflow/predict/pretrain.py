"""Pretraining of the duration predictor's trunk (``models.Encoder``) without durations.

Unlabelled data: the decision-time feature row (``features.job_features``) of EVERY job
of every source, the labelled ones with their labels hidden and the censored or
unknown-duration ones the importers keep (openb's ``Running`` pods). A job's own
duration is never an input nor a target: the only durations in a row are those the
feature schema itself uses, of OTHER jobs completed before the job's submission. The
attained-service column gets levels drawn from a fixed, label-free distribution (0, and
``u * D`` with ``u ~ U(0, 1)`` and ``D`` log-uniform in [1 min, 1e6 s]), so that the
encoder's input normalisation covers the attained levels fine-tuning shows it.

Objectives (``OBJECTIVES``):

* ``scarf`` (Bahri et al., ICLR 2022): a random ``corruption`` share of each row's
  features is replaced by values drawn from their marginals (the same feature of random
  rows); InfoNCE between the clean and the corrupted view's projected embeddings, the
  other rows of the batch being the negatives (symmetric, temperature ``temperature``).
* ``vime`` (Yoon et al., NeurIPS 2020, self-supervised part): a ``mask`` share of the
  features is replaced from the marginals; from the embedding, one head predicts which
  features were replaced (BCE) and another the original standardized row (MSE, weight
  ``alpha``).

``pretrain`` is seeded and deterministic given the seed (one process, CPU);
``pretrain_sources`` loads the sources and writes ``encoder.pt`` + ``encoder.json``
(``models.save_encoder``, with what it was pretrained on) and ``manifest.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import manifest
from ..errors import ConfigError
from ..traces.registry import load_workload
from ..workload import Workload
from . import features as F
from . import models

OBJECTIVES = ("scarf", "vime")
PRETRAIN_DEFAULTS = {
    "hidden": [64, 64],     # trunk widths (as the MLP's default trunk)
    "embedding": 32,        # trunk output width
    "projection": 32,       # scarf: projection head width
    "epochs": 10,           # passes over the rows
    "batch": 256,           # rows per step (scarf: the negatives are the batch)
    "lr": 1e-3,             # Adam learning rate
    "weight_decay": 1e-5,   # L2 on all weights
    "corruption": 0.6,      # scarf: share of features resampled in the corrupted view
    "temperature": 1.0,     # scarf: InfoNCE temperature
    "mask": 0.3,            # vime: share of features masked (resampled)
    "alpha": 2.0,           # vime: weight of the reconstruction loss
    "draws": F.ATTAINED_DRAWS,  # attained levels per job besides 0 (label-free draws)
    "bins": 16,             # > 0: piecewise-linear input encoding (``models.Encoder``),
                            # bin edges at quantiles of the unlabelled rows (0: standardized)
}
MIN_D_S, MAX_D_S = 60.0, 1e6  # the label-free attained draws: u * logU(MIN_D_S, MAX_D_S)


def unlabelled_rows(workload: Workload, *, draws: int = F.ATTAINED_DRAWS,
                    seed: int = 0) -> np.ndarray:
    """Feature rows of every job of ``workload`` (censored and unknown-duration ones
    included), ``1 + draws`` per job: attained 0 and ``draws`` label-free levels."""
    base = F.job_features(workload)
    if not len(base):
        return base
    rng = np.random.default_rng([seed, 3])
    reps = 1 + max(int(draws), 0)
    x = np.repeat(base, reps, axis=0)
    a = np.zeros(len(x))
    k = len(base) * (reps - 1)
    if k:
        d = np.exp(rng.uniform(math.log(MIN_D_S), math.log(MAX_D_S), size=k))
        a_draw = rng.uniform(0.0, 1.0, size=k) * d
        drawn = np.ones(len(x), dtype=bool)
        drawn[::reps] = False
        a[drawn] = a_draw
    x[:, F.ATTAINED_COL] = np.log1p(a)
    return x


def rows_of(sources: list[str], *, seed: int = 0, draws: int = F.ATTAINED_DRAWS,
            max_rows: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """Pretraining rows of ``sources`` (each a trace SOURCE), concatenated, at most
    ``max_rows`` (a seeded subset); and per source: jobs, censored, unknown, rows."""
    parts, info = [], []
    for i, s in enumerate(sources):
        w = load_workload(s)
        if not len(w):
            raise ConfigError(f"--workloads {s}: the source holds no jobs")
        x = unlabelled_rows(w, draws=draws, seed=seed + i)
        parts.append(x)
        info.append({"source": s, "jobs": len(w),
                     "censored": sum(bool(j.censored) for j in w.jobs),
                     "unknown_duration": sum(j.duration is None for j in w.jobs),
                     "rows": len(x)})
    x = np.concatenate(parts)
    if max_rows and len(x) > max_rows:
        x = x[np.sort(np.random.default_rng([seed, 4]).choice(len(x), max_rows,
                                                              replace=False))]
    return x, info


def _corrupt(torch, x, pool, rate: float, gen):
    """``x`` with a ``rate`` share of its entries replaced by the same feature of random
    rows of ``pool`` (the marginals); and the mask (1 = replaced)."""
    n, d = x.shape
    mask = (torch.rand(n, d, generator=gen) < rate).float()
    rows = torch.randint(0, len(pool), (n, d), generator=gen)
    marg = pool[rows, torch.arange(d).unsqueeze(0).expand(n, d)]
    return x * (1 - mask) + marg * mask, mask


def pretrain(x: np.ndarray, *, objective: str = "vime", seed: int = 0,
             params: dict | None = None,
             progress: Callable[[int, int, float], None] | None = None):
    """Pretrains an ``Encoder`` on the rows ``x`` (no labels). Returns the encoder and
    the mean loss of each epoch. ``progress(epoch, epochs, loss)`` after each epoch."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}, "
                          f"got {objective!r}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(F.NAMES) or len(x) < 2:
        raise ConfigError(f"pretraining needs at least 2 rows of {len(F.NAMES)} features, "
                          f"got shape {x.shape}")
    torch = models._torch()
    nn = torch.nn
    p = {**PRETRAIN_DEFAULTS, **(params or {})}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    Encoder, _ = models._modules()
    d, emb = x.shape[1], int(p["embedding"])
    enc = Encoder(d, [int(h) for h in p["hidden"]], emb, int(p["bins"]))
    enc.set_inputs(x)
    if objective == "scarf":
        heads = nn.Sequential(nn.Linear(emb, int(p["projection"])), nn.ReLU(),
                              nn.Linear(int(p["projection"]), int(p["projection"])))
    else:
        heads = nn.ModuleDict({"mask": nn.Linear(emb, d), "value": nn.Linear(emb, d)})
    params_all = list(enc.parameters()) + list(heads.parameters())
    opt = torch.optim.Adam(params_all, lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    xt = torch.as_tensor(x, dtype=torch.float32)
    n, b = len(xt), min(int(p["batch"]), len(xt))
    epochs = int(p["epochs"])
    history: list[float] = []
    enc.train()
    heads.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for at in range(0, n - b + 1, b):  # full batches (InfoNCE wants b negatives)
            xb = xt[perm[at:at + b]]
            if objective == "scarf":
                xc, _ = _corrupt(torch, xb, xt, float(p["corruption"]), gen)
                z1 = nn.functional.normalize(heads(enc(xb)), dim=1)
                z2 = nn.functional.normalize(heads(enc(xc)), dim=1)
                logits = z1 @ z2.T / float(p["temperature"])
                target = torch.arange(len(xb))
                loss = 0.5 * (nn.functional.cross_entropy(logits, target)
                              + nn.functional.cross_entropy(logits.T, target))
            else:
                xc, m = _corrupt(torch, xb, xt, float(p["mask"]), gen)
                h = enc(xc)
                bce = nn.functional.binary_cross_entropy_with_logits(heads["mask"](h), m)
                mse = ((heads["value"](h) - (xb - enc.mean) / enc.std) ** 2).mean()
                loss = bce + float(p["alpha"]) * mse
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
            count += len(xb)
        history.append(total / max(count, 1))
        if progress is not None:
            progress(epoch + 1, epochs, history[-1])
    enc.eval()
    return enc, history


def pretrain_sources(sources: list[str], out: str | Path, *, objective: str = "vime",
                     epochs: int | None = None, seed: int = 0, max_rows: int | None = None,
                     params: dict | None = None, command: str = "autoflow pretrain",
                     progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Pretrains on ``sources`` and writes the encoder folder ``out``; returns what was
    recorded in ``encoder.json`` under ``pretraining``."""
    if not sources:
        raise ConfigError("--workloads: name at least one trace SOURCE")
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}, "
                          f"got {objective!r}")
    p = {**PRETRAIN_DEFAULTS, **(params or {})}
    if epochs is not None:
        p["epochs"] = int(epochs)
    x, info = rows_of(sources, seed=seed, draws=int(p["draws"]), max_rows=max_rows)
    enc, history = pretrain(x, objective=objective, seed=seed, params=p, progress=progress)
    record = {"sources": info, "rows": len(x), "objective": objective,
              "epochs": int(p["epochs"]), "seed": seed, "hyperparameters": p,
              "loss": history, "labels_used": False,
              "note": "no job's own duration was an input or a target; feature columns "
                      "use durations of other jobs completed before the submission"}
    out = Path(out)
    models.save_encoder(enc, out, {"pretraining": record})
    config = {"workloads": list(sources), "objective": objective, "epochs": int(p["epochs"]),
              "max_rows": max_rows, "params": p, "out": str(out)}
    manifest.write(out / "manifest.json", manifest.build(command, config, seed))
    return record
