"""Episode samplers: where the environment's workloads come from.

An episode is a (workload, cluster) pair. Samplers draw windows of real traces, the
built-in workloads with a fresh seed, or a fitted generator; each episode gets
a random offered load, which the cluster and the workload are fitted to as ``autoflow
bench --load`` does (``autoflow.load.fit_load``: the cluster resized, node mix kept, and
the arrival times scaled where whole nodes miss the load), so that load and cluster size
vary from episode to episode and an episode's load is the one drawn. All randomness comes from the ``rng``
the environment passes (its ``np_random``).

Sources are written like everywhere else in autoflow (``FORMAT:PATH``,
``builtin:NAME``), comma-separated; an optional ``@CLUSTER`` suffix names the cluster
to scale (default: by format, see ``DEFAULT_CLUSTERS``):

- ``FORMAT:PATH`` (``itp:``, ``csv:``, ...): windows of a real trace;
- ``builtin:NAME``: a built-in workload generated afresh with a seed per episode;
- ``gen:FILE``: a fitted generator (``autoflow generate fit``) sampled per episode;
- ``wide:SOURCE`` (any of the above, e.g. ``wide:builtin:philly-mix``): episodes of
  SOURCE reshaped by knobs drawn afresh for each episode
  (``autoflow.generators.knobs.WIDE_RANGES``): CV of durations log-uniform in [0.3, 4],
  burstiness of arrivals log-uniform in [0.5, 4], a share of jobs in sweeps uniform in
  [0, 0.6] with runs of 2-10 jobs, and half of the time a random GPU mix over 1, 2, 4
  and 8 GPUs; load still drawn by the episode spec. The cluster defaults to SOURCE's;
  the episode's source label records the knobs (``wide[cv=0.52,burst=1.3,sweep=0.2x4,
  mix=base]:...``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoflow.cluster import ClusterSpec, load_cluster
from autoflow.errors import ClusterError, ConfigError
from autoflow.feasibility import fits_now
from autoflow.load import fit_load
from autoflow.state import ClusterState
from autoflow.traces.builtin import parse_name
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

DEFAULT_CLUSTERS = {"itp": "itp-8gpu", "builtin": "philly-64", "builtin:shared-gpu": "hetero-mix", "tiresias": "philly-64",
                    "helios": "itp-8gpu", "swf": "itp-8gpu", "csv": "hetero-mix",
                    "alibaba-openb": "hetero-mix", "alibaba-dlrm": "hetero-mix", "gen": "hetero-mix"}


HOLDOUT = 0.2  # share of each trace (its last jobs) kept out of training for validation


@dataclass(frozen=True)
class EpisodeSpec:
    jobs: tuple[int, int] = (150, 400)  # jobs per episode, drawn uniformly
    load: tuple[float, float] = (0.7, 1.3)  # offered GPU load, drawn uniformly
    part: tuple[float, float] = (0.0, 1.0)  # which part of a trace (by job order) to draw from


class Sampler:
    """One workload source; ``sample`` returns a fresh (workload, cluster) episode."""

    def __init__(self, source: str, cluster: str, spec: EpisodeSpec):
        self.source, self.spec = source, spec
        self.cluster = load_cluster(cluster)

    def draw_jobs(self, rng: np.random.Generator) -> Workload:
        """The jobs of one episode, starting at time 0."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> tuple[Workload, ClusterSpec]:
        for _ in range(8):  # a window can be degenerate (no GPU time, or all submitted at
            # one instant with a gang that keeps the cluster too large): draw again
            w = self.draw_jobs(rng)
            rho = float(rng.uniform(*self.spec.load))
            try:
                fit = fit_load(self.cluster, w, rho)
            except ClusterError:
                continue
            if not _all_can_run(fit.workload, fit.spec):  # e.g. a reshaped GPU mix asked
                continue  # for more GPUs of one type than the resized cluster has
            return fit.workload, fit.spec
        raise ConfigError(f"{self.source}: could not draw an episode with GPU work in it")


def _all_can_run(workload: Workload, spec: ClusterSpec) -> bool:
    """Every job fits on the empty cluster (else the simulator refuses the episode)."""
    empty = ClusterState(spec)
    return all(fits_now(empty, empty.compile(j)) for j in workload)


class TraceWindowSampler(Sampler):
    """Windows of consecutive jobs from a real trace, shifted to start at time 0."""

    def __init__(self, source: str, cluster: str, spec: EpisodeSpec):
        super().__init__(source, cluster, spec)
        w = load_workload(source).shifted()
        jobs = [j for j in w if j.duration is not None]
        lo, hi = (round(f * len(jobs)) for f in spec.part)
        self.jobs = jobs[lo:hi]
        if len(self.jobs) < spec.jobs[0]:
            raise ConfigError(f"{source}: {len(self.jobs)} jobs with known durations in part "
                              f"{spec.part} of the trace, fewer than an episode needs "
                              f"({spec.jobs[0]})")

    def draw_jobs(self, rng):
        n = int(rng.integers(self.spec.jobs[0], self.spec.jobs[1] + 1))
        n = min(n, len(self.jobs))
        start = int(rng.integers(0, len(self.jobs) - n + 1))
        return Workload(self.jobs[start:start + n], source=f"{self.source}[{start}:{start + n}]"
                        ).shifted()


class BuiltinSampler(Sampler):
    """A built-in workload generated afresh with a seed from the episode's rng."""

    def __init__(self, source: str, cluster: str, spec: EpisodeSpec):
        super().__init__(source, cluster, spec)
        self.name, _ = parse_name(source.split(":", 1)[1])  # fails fast on an unknown name

    def draw_jobs(self, rng):
        n = int(rng.integers(self.spec.jobs[0], self.spec.jobs[1] + 1))
        return load_workload(f"builtin:{self.name}:{n}", seed=int(rng.integers(2**31)))


class WideSampler(Sampler):
    """Episodes of another sampler reshaped by knobs drawn per episode (``wide:SOURCE``)."""

    def __init__(self, source: str, inner: Sampler, spec: EpisodeSpec):
        self.source, self.spec, self.inner, self.cluster = source, spec, inner, inner.cluster

    def draw_jobs(self, rng):
        from autoflow.generators.knobs import apply_knobs, draw_knobs

        w = self.inner.draw_jobs(rng)
        knobs = draw_knobs(rng)
        w = apply_knobs(w, knobs, rng).shifted()
        w.source = f"wide[{knobs.label()}]:{w.source}"
        return w


class MixtureSampler:
    """Picks one of several samplers uniformly per episode."""

    def __init__(self, samplers: list[Sampler]):
        if not samplers:
            raise ConfigError("no workload source given")
        self.samplers = samplers

    def sample(self, rng: np.random.Generator) -> tuple[Workload, ClusterSpec]:
        return self.samplers[int(rng.integers(len(self.samplers)))].sample(rng)

    def describe(self) -> list[str]:
        return [s.source for s in self.samplers]


def make_sampler(sources: str | list[str], spec: EpisodeSpec | None = None) -> MixtureSampler:
    """``"itp:a.csv,builtin:philly-mix@philly-64"`` -> a sampler over those sources."""
    spec = spec or EpisodeSpec()
    if isinstance(sources, str):
        sources = [s for s in sources.split(",") if s.strip()]
    samplers: list[Sampler] = []
    for src in sources:
        src, _, cluster = src.strip().partition("@")
        samplers.append(_one_sampler(src, cluster, spec))
    return MixtureSampler(samplers)


def _one_sampler(src: str, cluster: str, spec: EpisodeSpec) -> Sampler:
    fmt = src.split(":", 1)[0]
    if fmt == "wide":  # ``wide:SOURCE``: SOURCE's sampler (and default cluster), reshaped
        inner = src.split(":", 1)[1] if ":" in src else ""
        if not inner or inner.split(":", 1)[0] == "wide":
            raise ConfigError(f"{src}: write wide:SOURCE with one source that is not wide: "
                              "(e.g. wide:builtin:philly-mix)")
        return WideSampler(src, _one_sampler(inner, cluster, spec), spec)
    named = ":".join(src.split(":")[:2])  # e.g. builtin:shared-gpu, before the format
    cluster = cluster or DEFAULT_CLUSTERS.get(named) or DEFAULT_CLUSTERS.get(fmt, "hetero-mix")
    if fmt == "builtin":
        return BuiltinSampler(src, cluster, spec)
    if fmt in GENERATOR_SAMPLERS or fmt == "gen":
        if fmt not in GENERATOR_SAMPLERS:  # fitted generators (``gen:FILE``)
            from autoflow.generators.sampler import register
            register()
        return GENERATOR_SAMPLERS[fmt](src, cluster, spec)
    return TraceWindowSampler(src, cluster, spec)


# Samplers by source format beyond traces and built-ins (``gen``: ``generators.sampler``).
GENERATOR_SAMPLERS: dict[str, type[Sampler]] = {}
