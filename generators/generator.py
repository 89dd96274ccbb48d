"""A fitted generator: a job-attribute model and an arrival model, saved as one file.

``fit_generator(workload, model)`` fits both; ``FittedGenerator.sample`` draws a
workload of ``n`` jobs (optionally at a scaled load, or under conditions); ``save`` and
``load_generator`` keep it in a file. The ``empirical`` model (and the arrivals) is
saved as arrays and JSON in one ``.npz`` (``SAFE_FORMAT``; read with
``allow_pickle=False``: loading it runs no code, whatever the file). SDV models can only
be pickled: autoflow records the sha256 of each pickle it writes in the user's trust
registry and unpickles only those, or a file named with ``--trust-file``
(``autoflow.trust``). The file's content, not its name, says which kind it is. Each
file gets a card beside it (``NAME.card.json``: content and table-schema hashes,
``generators.card``), checked when it is loaded.

When the trace has workflows (jobs that depend on others, ``autoflow.workflow``), the
generator also learns its pipelines (``generators.pipelines``: their shapes, the
attributes of each stage, their share of the jobs and their own arrivals) and the
attribute and arrival models learn the independent jobs alone; its samples then hold
whole pipelines with valid dependencies beside independent jobs, ``n`` jobs in all. A
trace of pipelines only fits the attribute model on the stages (it then only fills what
whole pipelines leave of ``n``); the arrival model takes every job's submit time when
fewer than two independent jobs, or all at one instant, leave it nothing to learn. Conditions cannot be combined with
pipelines (a condition on single jobs would cut them apart): ``sample`` refuses them.
The pipeline part is always arrays and JSON (``PipelineModel.to_arrays``), in the safe
file or inside an SDV generator's pickle. A generator fitted on a trace without
workflows is what it always was, file and samples alike.
"""

from __future__ import annotations

import io
import json
import pickle
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoflow import atomic, trust
from autoflow.errors import ConfigError
from autoflow.manifest import versions
from autoflow.workload import Workload

from . import arrivals, card, pipelines
from .arrivals import ArrivalModel
from .conditions import Condition
from .empirical import EmpiricalCopula
from .models import make_model
from .pipelines import PipelineModel
from .table import from_table, to_table, top_users
from .transforms import NormalScores

FORMAT = "autoflow-generator/1"
SAFE_FORMAT = "autoflow-generator-npz/1"  # the .npz of a generator that needs no pickle
META = "__meta__"  # the npz member holding the JSON description (as UTF-8 bytes)
MAX_META_BYTES = 1 << 20
MAX_NPZ_BYTES = 1 << 29  # all members together, uncompressed
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
    pipelines: PipelineModel | None = None  # None: a trace without workflows

    def _attributes(self, n: int, seed: int):
        return self.attributes.sample(n, seed=seed)

    def sample(self, n: int, seed: int = 0, load_scale: float = 1.0,
               conditions: list[Condition] | tuple = ()) -> Workload:
        if n < 1:
            raise ConfigError(f"-n must be at least 1, got {n}")
        if getattr(self, "pipelines", None) is not None:  # pickles from before lack it
            return self._sample_pipelines(n, seed, load_scale, list(conditions))
        rng = np.random.default_rng(seed)
        times = self.arrivals.sample(n, rng, load_scale)
        jobs = self._jobs(n, seed, list(conditions))
        for job, t in zip(jobs, times):
            job.submit_time = float(t)
        for i, job in enumerate(jobs):
            job.job_id = f"syn-{i}"
        label = f"generated:{self.model_name}:{self.source}"
        return Workload(jobs, source=label)

    def _sample_pipelines(self, n: int, seed: int, load_scale: float,
                          conditions: list[Condition]) -> Workload:
        """``n`` jobs: whole pipelines and independent jobs (``generators.pipelines``)."""
        if conditions:
            raise ConfigError(f"conditions ({', '.join(map(str, conditions))}) are not "
                              f"supported by a generator with pipelines (they would cut "
                              f"pipelines apart); sample without --condition")
        if not load_scale > 0:
            raise ConfigError(f"load scale must be positive, got {load_scale}")
        pipes = self.pipelines
        prng = np.random.default_rng([seed, pipelines.STREAM])
        shapes = pipes.plan(n, prng)
        n_ind = n - int(pipes.stages[shapes].sum())
        jobs = []
        if n_ind:
            times = self.arrivals.sample(n_ind, np.random.default_rng(seed), load_scale)
            jobs = self._jobs(n_ind, seed, [])
            for i, (job, t) in enumerate(zip(jobs, times, strict=True)):
                job.submit_time, job.job_id = float(t), f"syn-{i}"
            span = (float(times[0]), float(times[-1]))
        else:
            span = (self.arrivals.origin, self.arrivals.origin)
        starts = pipes.starts(shapes.size, prng, load_scale, span)
        jobs += pipes.build(shapes, starts, prng)
        return Workload(jobs, source=f"generated:{self.model_name}:{self.source}")

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
        """Writes the generator whole or not at all: the safe ``.npz`` when its model
        allows (``empirical``), else a pickle whose sha256 goes to the trust registry."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(self.attributes, EmpiricalCopula):
            data = _to_npz(self)
            atomic.write_bytes(path, data)
            card.write(path, data, SAFE_FORMAT, self.describe())
            return
        data = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        atomic.write_bytes(path, data)
        trust.record(path, trust.sha256_bytes(data), "generator")
        card.write(path, data, "pickle", self.describe())

    def describe(self) -> dict:
        out = {"format": self.format, "model": self.model_name, "source": self.source,
               "table": self.table, "fit_seconds": round(self.fit_seconds, 3),
               "seed": self.seed, "arrival_period_h": self.arrivals.period / 3600,
               "arrivals_fitted": self.arrivals.n_fitted, **self.info}
        if getattr(self, "pipelines", None) is not None:
            out["pipelines"] = self.pipelines.describe()
        return out


def fit_generator(workload: Workload, model: str = "copula", seed: int = 0,
                  epochs: int | None = None, source: str = "") -> FittedGenerator:
    """The attribute and arrival models fitted to ``workload``'s jobs; with workflows in
    it, to its independent jobs, and its pipelines learned beside (module docstring)."""
    source = source or workload.source
    t0 = time.perf_counter()
    flows, independent = pipelines.split(workload.jobs)
    pipes, fit_on, times_of, fitted_on = None, workload, workload.jobs, ""
    if flows:
        top = top_users([j for j in workload.jobs if j.duration is not None])
        used = sum(j.duration is not None for j in independent)
        pipes = PipelineModel.fit(flows, used, top)
        stages = [j for f in flows for j in f]
        # a trace of pipelines only: its stages stand in for the independent jobs
        fitted_on = "independent jobs" if used else "stages"
        fit_on = Workload(independent if used else stages, source=workload.source)
        t = np.array([j.submit_time for j in independent])
        times_of = independent if t.size >= 2 and np.ptp(t) > 0 else workload.jobs
    df, summary = to_table(fit_on, source)
    attrs = make_model(model, epochs=epochs)
    attrs.fit(df, seed=seed)
    arrival_model = ArrivalModel().fit(np.array([j.submit_time for j in times_of]))
    info = {"versions": versions(), "epochs": epochs}
    if flows and pipes is None:  # every workflow left out (e.g. unknown durations)
        info["workflows_not_learned"] = len(flows)
    if fitted_on:
        info["attributes_fitted_on"] = fitted_on
        info["arrivals_fitted_on"] = "independent jobs" if times_of is independent \
            else "all jobs"
    return FittedGenerator(attrs.name, attrs, arrival_model, source, summary.to_dict(),
                           time.perf_counter() - t0, seed, info, pipelines=pipes)


def load_generator(path: str | Path) -> FittedGenerator:
    p = Path(path)
    what = f"generator {path}"
    if not p.exists():
        raise ConfigError(f"{what}: file not found (fit one with `autoflow generate fit`)")
    if not p.is_file():
        raise ConfigError(f"{what}: not a file")
    with open(p, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":  # a zip: the safe format, never unpickled
        if p.stat().st_size > MAX_NPZ_BYTES:
            raise ConfigError(f"{what}: larger than {MAX_NPZ_BYTES:,} bytes")
        data = p.read_bytes()
        card.check(p, data, what)
        return _from_npz(data, what)
    data = trust.read_trusted(p, what, "refit it with `autoflow generate fit` (--model "
                              "empirical writes a file that needs no trust)")
    card.check(p, data, what)
    try:
        gen = pickle.loads(data)
    except Exception as e:  # not a pickle, or a model needing a missing package
        raise ConfigError(f"{what}: cannot be loaded ({trust.why(e)})") from e
    if not isinstance(gen, FittedGenerator) or getattr(gen, "format", None) != FORMAT:
        raise ConfigError(f"{what}: not an autoflow generator file ({FORMAT})")
    return gen


def _to_npz(gen: FittedGenerator) -> bytes:
    a, arr = gen.attributes, gen.arrivals
    arrays = {"arrivals.rate": arr.rate, "arrivals.cum": arr.cum, "arrivals.gaps": arr.gaps,
              "chol": a.chol}
    kinds = []
    for k, col in enumerate(a.columns):
        m = a.marginals[col]
        if isinstance(m, NormalScores):
            kinds.append("scores")
            arrays |= {f"m{k}.grid": m.grid, f"m{k}.xs": m.xs}
        else:
            kinds.append("categories")
            cats, hi = m
            arrays |= {f"m{k}.cats": np.asarray([str(c) for c in cats], dtype=str),
                       f"m{k}.hi": hi}
    meta = {"format": SAFE_FORMAT, "generator_format": gen.format,
            "model_name": gen.model_name, "source": gen.source, "table": gen.table,
            "fit_seconds": gen.fit_seconds, "seed": gen.seed, "info": gen.info,
            "columns": list(a.columns), "marginals": kinds,
            "arrivals": {"origin": arr.origin, "period": arr.period, "bins": arr.bins,
                         "n_fitted": arr.n_fitted}}
    if gen.pipelines is not None:  # absent: the file of a generator without workflows
        parrays, meta["pipelines"] = gen.pipelines.to_arrays()
        arrays |= parrays
    arrays[META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _from_npz(data: bytes, what: str) -> FittedGenerator:
    """A generator from its safe file: every member's size is checked before it is read,
    every array's dtype, shape and values before use; nothing is unpickled."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = {i.filename: i for i in z.infolist()}
            if f"{META}.npy" not in infos:
                raise ConfigError(f"{what}: not an autoflow generator file (a zip without "
                                  f"{META})")
            if sum(i.file_size for i in infos.values()) > MAX_NPZ_BYTES or \
                    infos[f"{META}.npy"].file_size > MAX_META_BYTES:
                raise ConfigError(f"{what}: its arrays are larger than autoflow loads")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            raw = npz[META]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise ConfigError(f"{what}: {META} must be UTF-8 bytes")
            meta = json.loads(raw.tobytes().decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != SAFE_FORMAT:
                raise ConfigError(f"{what}: not an autoflow generator file ({SAFE_FORMAT})")
            return _build(meta, {k: npz[k] for k in npz.files if k != META}, what)
    except ConfigError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, TypeError,
            UnicodeDecodeError, AttributeError, IndexError) as e:
        # allow_pickle=False: an object array is a ValueError here, never unpickled
        raise ConfigError(f"{what}: not a valid generator file ({trust.why(e)})") from e


def _num(arrays: dict, key: str, what: str, ndim: int) -> np.ndarray:
    a = arrays[key]
    if a.dtype.kind not in "fiu" or a.ndim != ndim or not np.isfinite(a).all():
        raise ConfigError(f"{what}: {key} must be a finite {ndim}-d numeric array")
    return a.astype(np.float64)


def _build(meta: dict, arrays: dict, what: str) -> FittedGenerator:
    cols, kinds = meta["columns"], meta["marginals"]
    if not (isinstance(cols, list) and isinstance(kinds, list) and len(cols) == len(kinds)
            and cols and all(isinstance(c, str) for c in cols)):
        raise ConfigError(f"{what}: columns and marginals must be lists of the same length")
    attrs = EmpiricalCopula.__new__(EmpiricalCopula)
    attrs.columns, attrs.marginals = cols, {}
    attrs.chol = _num(arrays, "chol", what, 2)
    if attrs.chol.shape != (len(cols), len(cols)):
        raise ConfigError(f"{what}: chol must be {len(cols)} x {len(cols)}")
    for k, (col, kind) in enumerate(zip(cols, kinds, strict=True)):
        if kind == "scores":
            ns = NormalScores()
            ns.grid, ns.xs = _num(arrays, f"m{k}.grid", what, 1), _num(arrays, f"m{k}.xs",
                                                                        what, 1)
            if ns.grid.size < 1 or ns.grid.shape != ns.xs.shape or \
                    (np.diff(ns.grid) < 0).any() or (np.diff(ns.xs) < 0).any():
                raise ConfigError(f"{what}: column {col}: quantiles must be sorted, of one size")
            attrs.marginals[col] = ns
        elif kind == "categories":
            cats, hi = arrays[f"m{k}.cats"], _num(arrays, f"m{k}.hi", what, 1)
            if cats.dtype.kind != "U" or cats.ndim != 1 or cats.size < 1 or \
                    hi.shape != cats.shape or (np.diff(hi) < 0).any():
                raise ConfigError(f"{what}: column {col}: categories must be strings with "
                                  "one bound each")
            attrs.marginals[col] = (cats.astype(object), hi)
        else:
            raise ConfigError(f"{what}: column {col}: unknown marginal {kind!r}")
    arr = arrivals.restore(meta["arrivals"], _num(arrays, "arrivals.rate", what, 1),
                           _num(arrays, "arrivals.cum", what, 1),
                           _num(arrays, "arrivals.gaps", what, 1), f"{what}: arrivals")
    if meta.get("generator_format") != FORMAT:
        raise ConfigError(f"{what}: not an autoflow generator file ({FORMAT})")
    table, info = meta["table"], meta["info"]
    if not isinstance(table, dict) or not isinstance(info, dict):
        raise ConfigError(f"{what}: table and info must be objects")
    pipes = PipelineModel.from_arrays(meta["pipelines"], arrays, what) \
        if "pipelines" in meta else None
    return FittedGenerator(str(meta["model_name"]), attrs, arr, str(meta["source"]), table,
                           float(meta["fit_seconds"]), int(meta["seed"]), info,
                           pipelines=pipes)
