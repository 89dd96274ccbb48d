"""Predictor-backed estimates for ``sjf:ssl``, ``easy-backfill:ssl`` and ``gittins:ssl``
(issue 19).

``:ssl`` uses the predictor shipped with autoflow (``autoflow/models/predictor-v1``,
trained on ITP cluster01, 02, 03 and 05 only; see its CARD.md); ``:ssl=PATH`` a model
folder written by ``autoflow predictor fit`` (loaded only from that path, its hash and
feature schema checked by ``predict.models.load``).

The features are computed online (``predict.online.OnlineFeatures``) from the arrivals
and the jobs completed in the run, never from a duration not yet known. A job is
predicted once per time it joins the queue (arrival, or again after an eviction or a
preemption, at its work done then), in one batch per scheduling pass: the jobs that
joined since the last pass. ``predicted`` holds, per job, the three quantiles (0.1, 0.5,
0.9) of its remaining run time in seconds and the work done when they were predicted;
the policy writes ``JobState.predicted`` = work done + the median remaining (the
predicted duration every ranking and EASY's shadow time read, in place of the history
estimate the core put there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.jobstate import WAITING
from ..errors import ConfigError
from ..predict.online import OnlineFeatures

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "predictor-v1"
_CACHE: dict[str, object] = {}


def parse_ssl(arg: str | None, name: str) -> Path | None:
    """The predictor folder of ``NAME:ssl`` (None: the shipped one) or ``NAME:ssl=PATH``;
    None for no argument (the history estimator). Anything else is a ``ConfigError``."""
    if not arg:
        return None
    if arg == "ssl":
        return SHIPPED
    if arg.startswith("ssl="):
        path = arg[4:].strip()
        if not path:
            raise ConfigError(f"{name}:ssl= needs a model folder (from autoflow predictor fit)")
        return Path(path)
    raise ConfigError(f"policy {name} takes ssl or ssl=PATH (a predictor folder), "
                      f"got {arg!r}")


def load_predictor(folder: Path):
    """The predictor in ``folder``, loaded once per process (by resolved path and the
    hash its card records, so a refit folder is read again)."""
    from ..predict import models

    key = str(folder.resolve()) if folder.exists() else str(folder)
    card = folder / "model.json"
    stamp = card.stat().st_mtime_ns if card.is_file() else None
    got = _CACHE.get(key)
    if got is None or got[0] != stamp:
        got = _CACHE[key] = (stamp, models.load(folder))
    return got[1]


def check_ssl(arg: str, name: str) -> None:
    """Loads the predictor named (a bad folder fails before any simulation)."""
    make_ssl(arg, name)


class SslPredictions:
    """The predictions of one policy's run (see the module docstring)."""

    def __init__(self, predictor, spec: str):
        self.predictor = predictor
        self.spec = spec  # "ssl" or "ssl=PATH", for the label
        self.reset()

    def reset(self) -> None:
        self.online = OnlineFeatures()
        self.pending: list = []  # joined the queue since the last pass, not yet predicted
        self.version: dict[int, int] = {}  # idx -> JobState.version when predicted
        self.quantiles: dict[int, tuple[float, float, float]] = {}  # remaining seconds
        self.at_work: dict[int, float] = {}  # work done when predicted

    def joined(self, js) -> None:
        """From the policy's ``queue_key``: the job joins the queue (arrival or again)
        unless it was predicted at its current version."""
        if self.version.get(js.idx) == js.version:
            return
        if js.idx not in self.online:
            self.online.arrive(js)
        self.pending.append(js)

    def completed(self, js) -> None:
        self.online.complete(js)

    def features(self, jobs: list, now: float) -> np.ndarray:
        """The batch's feature rows (``OnlineFeatures.rows``)."""
        return self.online.rows(jobs, now)

    def refresh(self, ctx, rekey: bool, changed=None) -> None:
        """Predicts, in one batch, the waiting jobs that joined since the last pass and
        sets their ``predicted``; with ``rekey`` they are sorted again in the queue
        (``changed(js)``, if given, is called for each between leaving the queue and
        joining it again: where a policy drops what it cached from the old estimate)."""
        if not self.pending:
            return
        seen, jobs = set(), []
        waiting = ctx.waiting
        for js in self.pending:
            if (js.idx not in seen and js.status == WAITING and js in waiting
                    and self.version.get(js.idx) != js.version):
                seen.add(js.idx)
                jobs.append(js)
        self.pending.clear()
        if not jobs:
            return
        q = np.exp(self.predictor.predict(self.features(jobs, ctx.now)))
        for js, (lo, mid, hi) in zip(jobs, q.tolist()):
            if rekey:
                waiting.remove(js)
            work = js.progress
            self.version[js.idx] = js.version
            self.quantiles[js.idx] = (lo, mid, hi)
            self.at_work[js.idx] = work
            js.predicted = work + mid
            if changed is not None:
                changed(js)
            if rekey:
                waiting.add(js)


def make_ssl(arg: str | None, name: str) -> SslPredictions | None:
    folder = parse_ssl(arg, name)
    if folder is None:
        return None
    try:
        predictor = load_predictor(folder)
    except ConfigError as e:
        why = str(e).replace(f"--model {folder}: ", "").replace(f"model {folder}: ", "")
        raise ConfigError(f"policy {name}:{arg}: predictor {folder}: {why}") from None
    return SslPredictions(predictor, arg)


def label(base: str, ssl: SslPredictions | None) -> str:
    return base if ssl is None else f"{base}:{ssl.spec}"

