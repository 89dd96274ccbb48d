"""A fitted generator: a job-attribute model and an arrival model, saved as one file.

``fit_generator(workload, model)`` fits both; ``FittedGenerator.sample`` draws a
workload of ``n`` jobs (optionally at a scaled load, or under conditions); ``save`` and
``load_generator`` keep it in a file (a pickle: load only files you trust).
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoflow.errors import ConfigError
from autoflow.manifest import versions
from autoflow.workload import Workload

from .arrivals import ArrivalModel
from .conditions import Condition
from .models import make_model
from .table import from_table, to_table

FORMAT = "autoflow-generator/1"
MAX_BATCHES = 64  # rejection sampling under conditions gives up after this many batches


@dataclass
class FittedGenerator:
    model_name: str
    attributes: object  # EmpiricalCopula or SdvModel
    arrivals: ArrivalModel
    source: str
    table: dict  # rows, used, unknown_duration
    fit_seconds: float
    seed: int
    info: dict = field(default_factory=dict)
    format: str = FORMAT

    def _attributes(self, n: int, seed: int):
        return self.attributes.sample(n, seed=seed)

    def sample(self, n: int, seed: int = 0, load_scale: float = 1.0,
               conditions: list[Condition] | tuple = ()) -> Workload:
        if n < 1:
            raise ConfigError(f"-n must be at least 1, got {n}")
        rng = np.random.default_rng(seed)
        times = self.arrivals.sample(n, rng, load_scale)
        jobs = self._jobs(n, seed, list(conditions))
        for job, t in zip(jobs, times):
            job.submit_time = float(t)
        for i, job in enumerate(jobs):
            job.job_id = f"syn-{i}"
        label = f"generated:{self.model_name}:{self.source}"
        return Workload(jobs, source=label)

    def _jobs(self, n: int, seed: int, conditions: list[Condition]) -> list:
        if not conditions:
            return from_table(self._attributes(n, seed), np.zeros(n))
        every = [c for c in conditions if c.fraction is None]
        shares = [c for c in conditions if c.fraction is not None]
        if len(shares) > 1:
            raise ConfigError("at most one condition may carry a @FRACTION")
        want_in = round(shares[0].fraction * n) if shares else n
        quota = {True: want_in, False: n - want_in}
        got: dict[bool, list] = {True: [], False: []}
        batch = max(2 * n, 1000)
        for b in range(MAX_BATCHES):
            for job in from_table(self._attributes(batch, seed * 1_000_003 + b), np.zeros(batch)):
                if not all(c(job) for c in every):
                    continue
                side = shares[0](job) if shares else True
                if len(got[side]) < quota[side]:
                    got[side].append(job)
            if all(len(got[s]) >= quota[s] for s in (True, False)):
                break
        else:
            short = {str(s): quota[s] - len(got[s]) for s in (True, False)
                     if len(got[s]) < quota[s]}
            raise ConfigError(f"conditions {', '.join(map(str, conditions))}: too rare under "
                              f"this model; {short} job(s) still missing after "
                              f"{MAX_BATCHES * batch:,} sampled")
        jobs = got[True] + got[False]
        order = np.random.default_rng(seed).permutation(len(jobs))  # mix the two sides
        return [jobs[i] for i in order]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)

    def describe(self) -> dict:
        return {"format": self.format, "model": self.model_name, "source": self.source,
                "table": self.table, "fit_seconds": round(self.fit_seconds, 3),
                "seed": self.seed, "arrival_period_h": self.arrivals.period / 3600,
                "arrivals_fitted": self.arrivals.n_fitted, **self.info}


def fit_generator(workload: Workload, model: str = "copula", seed: int = 0,
                  epochs: int | None = None, source: str = "") -> FittedGenerator:
    source = source or workload.source
    df, summary = to_table(workload, source)
    attrs = make_model(model, epochs=epochs)
    t0 = time.perf_counter()
    attrs.fit(df, seed=seed)
    arrivals = ArrivalModel().fit(np.array([j.submit_time for j in workload.jobs]))
    return FittedGenerator(attrs.name, attrs, arrivals, source, summary.to_dict(),
                           time.perf_counter() - t0, seed,
                           {"versions": versions(), "epochs": epochs})


def load_generator(path: str | Path) -> FittedGenerator:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"generator {path}: file not found (fit one with "
                          "`autoflow generate fit`)")
    try:
        with open(p, "rb") as f:
            gen = pickle.load(f)
    except Exception as e:  # not a pickle, or a model needing a missing package
        raise ConfigError(f"generator {path}: cannot be loaded ({type(e).__name__}: {e})") from e
    if not isinstance(gen, FittedGenerator) or getattr(gen, "format", None) != FORMAT:
        raise ConfigError(f"generator {path}: not an autoflow generator file ({FORMAT})")
    return gen
