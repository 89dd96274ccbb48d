"""Offered load, and fitting a cluster and a workload to a target load (``--load RHO``).

**Offered load** is the GPU-time the jobs ask for (GPUs × share × duration) over the
GPU-time the cluster has during the workload's *load span*:
``offered_gpu_seconds / (GPUs × load_span)``. The load span is

- for a workload whose jobs arrive over time: the spread of the submit times plus the
  mean duration, from the first submission to about when the last job would end if
  nothing queued. The load is then set by the arrival rate, as in the Tiresias and
  Gavel evaluations;
- for a *batch*, every job submitted at the same instant (there is no arrival rate):
  ``D99``, the 99th percentile of the durations (nearest rank: the longest job of a
  batch of 100 jobs or fewer), about the time the batch takes if nothing queued. Its
  load is the share of the cluster's GPU-time the jobs fill when packed into that time;
  a one-job trace's load is its GPUs over the cluster's. (Over the mean duration, a batch
  "at load 0.9" got a cluster that ran every job at once with a quarter of its GPUs busy;
  over the spread alone, 0 s or an arbitrary 1 s, a cluster of about 10⁸ GPUs.)

Both are at least 1 s. A workload with arrivals never has its span set by ``D99``:
time-scaling (step 4) moves the spread continuously, and one long job in a short window
would otherwise pin the span (Alibaba openb's longest pod runs 145 days; a window of a
few hundred jobs often spans less than its longest one).

**Reaching a target** (``fit_load``), in this order:

1. *Resize.* Node groups (same GPU type, GPUs, CPU and memory) keep their proportions
   and are scaled to the GPUs that give ``RHO`` (largest-remainder rounding to whole
   nodes). A cluster of more than ``MAX_LOAD_GPUS`` GPUs or ``MAX_NODES`` nodes is not
   built: ``ClusterError`` says what the target would need (a very low ``RHO`` on a large
   trace).
2. *Keep the mix.* A heterogeneous cluster is not shrunk below the size at which the
   rounding still keeps its GPU-type mix: the GPU shares by type may differ from the
   full cluster's by at most ``MIX_TOLERANCE`` (total variation distance). A homogeneous
   cluster has no such floor. (Without it, Alibaba openb's 1,213 nodes shrink to two at
   0.9: a G2 and a G3 node.)
3. *Keep every job runnable.* Every job shape that runs on the full cluster (a GPU type,
   a wide gang, a large CPU or memory request) gets nodes of the most common group that
   can host it, until none is missing; then proportional nodes above the size of steps
   1-2 are dropped while every shape still runs.
4. *Time-scale.* If the resized cluster's load is off ``RHO`` by more than
   ``RESIZE_TOLERANCE`` (whole nodes and the floors of steps 2-3 do that), every submit time is
   scaled by one factor around the first (the inter-arrival gaps stretched or
   compressed, durations kept), as the Tiresias and Gavel evaluations set the load by
   the arrival rate, so that the load is ``RHO``. A batch has no gaps to scale: its
   resized cluster is kept if it is within ``TOLERANCE``, and otherwise ``ClusterError``
   says so and names a load that resizing alone reaches (or run it without ``--load``).
5. If that cannot reach ``RHO`` with the mix kept (step 2), steps 1, 3 and 4 again
   without it. If the load is still more than ``TOLERANCE`` off (a batch; a cluster that
   must be large to run a wide gang, which even arrivals compressed toward one instant
   cannot load), ``ClusterError`` says why.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from .cluster import ClusterSpec, Node
from .errors import ClusterError
from .limits import MAX_LOAD_GPUS, MAX_NODES, MAX_TIME_S
from .workload import Workload

TOLERANCE = 0.03  # the achieved load is within ±3% of the target, or ClusterError
RESIZE_TOLERANCE = 0.01  # resizing alone within ±1%: the arrival times are kept as they are
MIX_TOLERANCE = 0.10  # a resized cluster's GPU shares by type stay within 10 points (TV)

Group = tuple[str, int, int, int]  # GPU type, GPUs, CPU, memory


def load_span(workload: Workload) -> float:
    """Seconds over which the workload offers its GPU-time (at least 1 s): the spread of
    the submit times plus the mean duration of the jobs with a known one; for a batch (no
    spread) the 99th percentile of those durations (nearest rank). See the module
    docstring."""
    if not workload.jobs:
        return 0.0
    spread, mean, d99 = _span_parts(workload)
    return _span(spread, mean, d99)


def _span_parts(workload: Workload) -> tuple[float, float, float]:
    """(submit spread, mean duration, D99) of a non-empty workload."""
    spread = workload.jobs[-1].submit_time - workload.jobs[0].submit_time
    d = workload.durations()
    if not len(d):
        return spread, 0.0, 0.0
    d99 = float(np.partition(d, math.ceil(0.99 * len(d)) - 1)[math.ceil(0.99 * len(d)) - 1])
    return spread, float(d.mean()), d99


def _span(spread: float, mean: float, d99: float) -> float:
    return max(1.0, spread + mean if spread > 0 else d99)


def offered_load(workload: Workload, spec: ClusterSpec) -> float:
    """GPU-time asked for over GPU-time available during the load span."""
    return workload.offered_gpu_seconds() / (load_span(workload) * max(1, spec.total_gpus))


@dataclass
class LoadFit:
    """A cluster and a workload fitted to a target load, and how."""

    spec: ClusterSpec
    workload: Workload
    target: float | None  # None: no --load given
    achieved: float
    method: str  # "resize" | "resize+time-scale" ("none" without a target)
    time_scale: float  # factor on the submit times (1.0: as in the trace)
    resized_load: float  # the load on the resized cluster before time-scaling
    mix_tolerance: float | None = None  # the GPU-type mix floor used (None: none)

    def to_dict(self) -> dict:
        return {"load_method": self.method, "target_load": self.target,
                "offered_load": round(self.achieved, 4), "time_scale": round(self.time_scale, 6),
                "resized_load": round(self.resized_load, 4), "mix_tolerance": self.mix_tolerance}


def fit_load(spec: ClusterSpec, workload: Workload, rho: float,
             mix_tolerance: float | None = MIX_TOLERANCE) -> LoadFit:
    """Resize ``spec`` and, where that is not enough, time-scale ``workload`` so that the
    offered load is ``rho`` (see the module docstring)."""
    if mix_tolerance is not None:
        try:
            return _fit(spec, workload, rho, mix_tolerance)
        except ClusterError:
            pass  # the mix is a preference, the load a requirement: try without the floor
    return _fit(spec, workload, rho, None)


def _fit(spec: ClusterSpec, workload: Workload, rho: float,
         mix_tolerance: float | None) -> LoadFit:
    resized = resize(spec, workload, rho, mix_tolerance)
    base = offered_load(workload, resized)
    if abs(base / rho - 1) <= RESIZE_TOLERANCE:
        return LoadFit(resized, workload, rho, base, "resize", 1.0, base, mix_tolerance)
    where = (f"--load {rho:g} cannot be reached within ±{TOLERANCE:.0%} on {spec.name}: the "
             f"resized cluster ({resized.total_gpus} GPUs) gives {base:.3g}")
    # with arrivals, the load span is spread x factor + mean: scaling the submit times
    # moves the first term; a batch has none to move
    spread, mean, _ = _span_parts(workload)
    offered = workload.offered_gpu_seconds()
    if spread <= 0:
        if abs(base / rho - 1) <= TOLERANCE:  # whole nodes, within the tolerance
            return LoadFit(resized, workload, rho, base, "resize", 1.0, base, mix_tolerance)
        raise ClusterError(f"{where}, and every job is submitted at the same instant, so the "
                           f"arrivals cannot be time-scaled; try --load {base:.3g} (resizing "
                           "alone reaches it) or no --load")
    needed = offered / (rho * resized.total_gpus)  # span giving rho
    at0 = max(1.0, mean)  # the span as the arrivals are compressed toward one instant
    if needed < at0 * (1 - TOLERANCE):
        most = offered / (at0 * resized.total_gpus)
        raise ClusterError(f"{where}, and even with the arrivals compressed toward one "
                           f"instant the load would only approach {most:.3g}; the cluster "
                           "cannot be smaller (whole nodes, and every job that runs on the "
                           "full cluster must still run on it)")
    factor = max(needed - mean, 1.0) / spread
    if workload.jobs[0].submit_time + spread * factor > MAX_TIME_S:
        raise ClusterError(f"{where}, and the arrivals would have to be stretched by "
                           f"{factor:.3g}, past submit times of {MAX_TIME_S:g} s")
    scaled = time_scaled(workload, factor)
    got = offered_load(scaled, resized)
    if abs(got / rho - 1) > TOLERANCE:
        raise ClusterError(f"{where}, and {got:.3g} with the arrivals time-scaled by {factor:.4g}")
    return LoadFit(resized, scaled, rho, got, "resize+time-scale", factor, base, mix_tolerance)


def time_scaled(workload: Workload, factor: float, whole_seconds: bool | None = None) -> Workload:
    """The same jobs with every submit time's distance from the first scaled by ``factor``;
    rounded to whole seconds where the workload's submit times are all whole (a trace's own
    resolution; the simulator's arithmetic then stays as exact as on the unscaled trace),
    or as ``whole_seconds`` says."""
    if factor <= 0:
        raise ValueError(f"time-scale factor must be > 0, got {factor}")
    if not workload.jobs:
        return workload
    t0 = workload.jobs[0].submit_time
    whole = (all(float(j.submit_time).is_integer() for j in workload.jobs)
             if whole_seconds is None else whole_seconds)
    return Workload([replace(j, submit_time=_at(t0 + (j.submit_time - t0) * factor, whole))
                     for j in workload.jobs], workload.source, workload.summary)


def _at(t: float, whole: bool) -> float:
    return float(round(t)) if whole else t


def resize(spec: ClusterSpec, workload: Workload, rho: float,
           mix_tolerance: float | None = MIX_TOLERANCE, span: float | None = None) -> ClusterSpec:
    """Steps 1-3 of the module docstring: the cluster, node mix kept, sized for ``rho``
    over ``span`` seconds (default ``load_span``). ``mix_tolerance=None`` leaves out the
    floor of step 2."""
    from .state import ClusterState

    if not rho > 0:
        raise ClusterError(f"--load must be > 0, got {rho}")
    offered = workload.offered_gpu_seconds()
    if offered <= 0:
        raise ClusterError("cannot size the cluster by load: the workload offers no GPU-time")
    if not any(n.gpus for n in spec.nodes):
        raise ClusterError(f"cluster {spec.name} has no GPUs to scale")
    target = offered / (rho * (load_span(workload) if span is None else span))
    per_node = spec.total_gpus / len(spec.nodes)
    if target > MAX_LOAD_GPUS or target / per_node > MAX_NODES:
        where = f" {workload.source}" if workload.source else ""
        raise ClusterError(f"--load {rho:g}: the workload{where} would need a cluster of about "
                           f"{target:,.0f} GPUs ({target / per_node:,.0f} nodes of "
                           f"{spec.name}), more than the {MAX_LOAD_GPUS:,} GPUs and "
                           f"{MAX_NODES:,} nodes that --load builds; use a higher --load or "
                           "a smaller workload")
    groups: dict[Group, list[Node]] = {}
    for n in spec.nodes:
        groups.setdefault((n.gpu_type, n.gpus, n.cpu_milli, n.memory_mib), []).append(n)
    full_mix = _mix(groups, {k: len(v) for k, v in groups.items()})
    size = target
    if mix_tolerance is not None:
        size = max(target, _mix_floor(groups, spec.total_gpus, full_mix, mix_tolerance, target))
    counts = _proportional(groups, spec.total_gpus, size)

    def state(c: dict[Group, int]) -> ClusterState:
        return ClusterState(_build(groups, c, f"{spec.name}@load{rho:g}"))

    shapes = _runnable_shapes(ClusterState(spec), workload)
    _repair(groups, counts, shapes, state)
    _trim(groups, counts, shapes, state, size,
          None if mix_tolerance is None else (full_mix, mix_tolerance))
    return state(counts).spec


def _proportional(groups: dict[Group, list[Node]], total: int, size: float) -> dict[Group, int]:
    """Node counts per group for ``size`` GPUs: proportional, largest remainders first,
    each rounding up taken only if it brings the total nearer ``size``."""
    factor = size / total
    shares = {k: len(v) * factor for k, v in groups.items()}
    counts = {k: math.floor(s) for k, s in shares.items()}
    gpus = sum(counts[k] * k[1] for k in counts)
    for k in sorted(groups, key=lambda k: -(shares[k] - counts[k])):
        if k[1] > 0 and gpus + k[1] / 2 <= size:
            counts[k] += 1
            gpus += k[1]
    return counts


def _mix_floor(groups: dict[Group, list[Node]], total: int, full_mix: dict[str, float],
               tolerance: float, target: float) -> float:
    """The fewest GPUs from which on, up to the full cluster, proportional rounding keeps
    the GPU-type mix within ``tolerance`` of the full cluster's (0 for one GPU type).
    Searched down from the full cluster, stopping at ``target``."""
    if len(full_mix) < 2:
        return 0.0
    size = total
    while size > target:
        if _distance(_mix(groups, _proportional(groups, total, size)), full_mix) > tolerance:
            return float(size + 1)
        size -= 1
    return 0.0


def _mix(groups: dict[Group, list[Node]], counts: dict[Group, int]) -> dict[str, float]:
    by_type: Counter = Counter()
    for k, c in counts.items():
        by_type[k[0]] += c * k[1]
    total = sum(by_type.values())
    return {t: g / total for t, g in by_type.items()} if total else {}


def _distance(a: dict[str, float], b: dict[str, float]) -> float:
    """Total variation distance between two GPU-type mixes (1 when one is empty)."""
    if not a or not b:
        return 1.0
    return 0.5 * sum(abs(a.get(t, 0.0) - b.get(t, 0.0)) for t in a.keys() | b.keys())


def _build(groups: dict[Group, list[Node]], counts: dict[Group, int], name: str) -> ClusterSpec:
    nodes: list[Node] = []
    for k, members in groups.items():
        for i in range(counts[k]):
            src = members[i % len(members)]
            nodes.append(replace(src, name=src.name if i < len(members) else f"{src.name}-x{i}"))
    return ClusterSpec(name, nodes)


def _runnable_shapes(full, workload: Workload) -> list:
    """One job per shape (GPUs, share, types, CPU, memory) that runs on the full cluster;
    a job that does not is left to the simulator, which names it."""
    from .feasibility import fits_now

    shapes = {}
    for j in workload:
        shapes.setdefault((j.num_gpus, j.gpu_milli, tuple(sorted(j.gpu_types)), j.cpu_milli,
                           j.memory_mib), j)
    return [j for j in shapes.values() if fits_now(full, full.compile(j))]


def _repair(groups, counts: dict[Group, int], shapes: list, state) -> None:
    """Adds nodes until every shape runs. Repeated: a wide node added for one job can stop
    another from running, whose gang spread over narrower nodes while no node of its type
    was wide enough (a gang then needs one node, with that node's CPU and memory)."""
    from .feasibility import fits_now

    by_size = sorted(groups, key=lambda k: -len(groups[k]))
    for _ in range(len(shapes) + 1):
        cur, added = state(counts), False
        for job in shapes:
            if fits_now(cur, cur.compile(job)):
                continue
            for k in by_size:  # the most common node group that makes it fit gets the nodes
                need = max(1, -(-job.num_gpus // k[1])) if k[1] else 1
                counts[k] += need
                trial = state(counts)
                if fits_now(trial, trial.compile(job)):
                    cur, added = trial, True
                    break
                counts[k] -= need
            else:  # pragma: no cover - the full cluster's own group always fits it
                raise ClusterError(f"cannot resize {cur.spec.name} so that job {job.job_id} "
                                   "still runs")
        if not added:
            return
    raise ClusterError(f"resizing {cur.spec.name}: adding nodes for one job kept stopping "
                       "another from running")


def _trim(groups, counts: dict[Group, int], shapes: list, state, size: float,
          mix: tuple[dict, float] | None) -> None:
    """Drops nodes added above ``size`` GPUs (nearest) while every shape still runs and
    the mix stays within its tolerance (or no further from the full mix than before)."""
    from .feasibility import fits_now

    def distance() -> float:
        return _distance(_mix(groups, counts), mix[0]) if mix else 0.0

    for k in sorted(groups, key=lambda k: -counts[k]):
        while counts[k] > 0 and sum(counts[g] * g[1] for g in counts) - k[1] / 2 >= size:
            before = distance()
            counts[k] -= 1
            trial = state(counts)
            if (not trial.spec.nodes or distance() > max(before, mix[1] if mix else 0.0)
                    or not all(fits_now(trial, trial.compile(j)) for j in shapes)):
                counts[k] += 1
                break

