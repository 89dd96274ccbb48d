"""One function runs a policy on a workload and a cluster and returns the metrics.

``evaluate(policy, workload, cluster)`` simulates one run and returns an
:class:`Evaluation`: the metrics of ``autoflow.metrics.summarize``, the per-job
completion times (for a CDF), the guard counts of a learned policy and the finished run
itself (``result``: every job's state, for callers that need more than the metrics).
``autoflow bench``, the training validation of ``autoflow train``, the relative reward's
baseline (``envs/baseline.py``) and the benchmark scripts all go through it, so that a
figure in one place means the same as in another.

``evaluate_many`` runs several policies on the same workload and cluster;
``evaluate_at_load`` first fits the cluster and the workload to a target load
(``autoflow.load.fit_load``) and says what load was reached.

A policy is a spec (``"las"``, ``"fifo+fgd"``, ``"rl:runs/agent/best_model.zip"``), made
afresh for the run, or a :class:`~autoflow.policies.base.Policy` object, used as given
(give a fresh one per run: a policy may keep state from the run it served).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from .cluster import ClusterSpec
from .load import LoadFit, fit_load, offered_load
from .metrics import summarize
from .policies import make_policy
from .policies.base import Policy
from .sim.simulator import SimConfig, SimResult, Simulator
from .workload import Workload


@dataclass
class Evaluation:
    """One policy's run on one workload and cluster."""

    policy: str  # the spec it was asked for, or the policy object's label
    metrics: dict  # ``summarize(result)``: avg/p50/p99 JCT, waits, slowdown, ...
    result: SimResult  # the finished run: job states, cluster, wall time, guard counts

    @property
    def jcts(self) -> np.ndarray:
        """Each job's completion time (finish - submit), in workload order; a job that
        never started (a stage whose parent did not succeed) is left out."""
        return np.array([js.finish - js.submit for js in self.result.jobs
                         if js.first_start is not None], dtype=np.float64)

    @property
    def guard(self) -> dict:
        """A learned policy's decisions and guard fallbacks (empty for a heuristic)."""
        return dict(self.result.guard)


def evaluate(policy: str | Policy, workload: Workload, cluster: ClusterSpec,
             config: SimConfig | None = None, *, seed: int | None = None) -> Evaluation:
    """Simulates ``workload`` on ``cluster`` under ``policy`` and summarizes the run.
    ``seed``, when given, replaces ``config.seed`` (failures and tie-breaks); the same
    inputs and seed give the same metrics (``wall_s`` aside)."""
    config = config or SimConfig()
    if seed is not None:
        config = replace(config, seed=seed)
    made = make_policy(policy) if isinstance(policy, str) else policy
    result = Simulator(workload, cluster, made, config).run()
    return Evaluation(policy if isinstance(policy, str) else made.label, summarize(result),
                      result)


def evaluate_many(policies: Iterable[str], workload: Workload, cluster: ClusterSpec,
                  config: SimConfig | None = None, *, seed: int | None = None,
                  on_done: Callable[[Evaluation], None] | None = None) -> dict[str, Evaluation]:
    """``evaluate`` for each policy spec in turn, by spec; ``on_done`` is called after
    each run (a progress bar)."""
    out = {}
    for name in policies:
        out[name] = ev = evaluate(name, workload, cluster, config, seed=seed)
        if on_done:
            on_done(ev)
    return out


@dataclass
class LoadedEvaluation:
    """Several policies on one workload and cluster fitted to a target load."""

    fit: LoadFit  # the cluster and workload that ran, the target and the achieved load
    runs: dict[str, Evaluation]  # by policy spec

    def avg_jct(self) -> dict[str, float]:
        return {name: ev.metrics["avg_jct"] for name, ev in self.runs.items()}


def fit_to(cluster: ClusterSpec, workload: Workload, load: float | None) -> LoadFit:
    """``fit_load`` for a target load; without one, the cluster and workload as they are,
    with the load they offer."""
    if load is None:
        got = offered_load(workload, cluster)
        return LoadFit(cluster, workload, None, got, "none", 1.0, got)
    return fit_load(cluster, workload, load)


def evaluate_at_load(policies: Iterable[str], workload: Workload, cluster: ClusterSpec,
                     load: float | None, config: SimConfig | None = None, *,
                     seed: int | None = None,
                     on_done: Callable[[Evaluation], None] | None = None) -> LoadedEvaluation:
    """Fits ``cluster`` and ``workload`` to ``load`` (``fit_to``), then ``evaluate_many``."""
    fit = fit_to(cluster, workload, load)
    return LoadedEvaluation(fit, evaluate_many(policies, fit.workload, fit.spec, config,
                                               seed=seed, on_done=on_done))
