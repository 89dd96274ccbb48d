"""Perturbed replays: the same workload with submit times jittered and the restart
overhead drawn, so that a policy is judged on several replays of a case rather than one
(replays are chaotic: a 1 s change of overhead moves a case by up to 7%)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .sim.simulator import SimConfig
from .workload import Workload

JITTER_S = 60.0  # every submit time moves by up to this much, either way
OVERHEAD_RANGE = (25.0, 35.0)  # the restart overhead is drawn in this range (seconds)


def perturbed(w: Workload, replay: int, jitter_s: float = JITTER_S,
              overhead_range: tuple[float, float] = OVERHEAD_RANGE
              ) -> tuple[Workload, SimConfig]:
    """Replay 0 is the workload as is (default config); replay ``r > 0`` jitters every
    submit time uniformly by ±``jitter_s`` (clipped at 0, re-sorted) and draws the restart
    overhead, both from a generator seeded with ``r``."""
    if replay == 0:
        return w, SimConfig()
    rng = np.random.default_rng(replay)
    jit = rng.uniform(-jitter_s, jitter_s, len(w))
    jobs = [replace(j, submit_time=max(0.0, j.submit_time + float(d))) for j, d in zip(w, jit)]
    jobs.sort(key=lambda j: j.submit_time)
    return (Workload(jobs, source=f"{w.source}~{replay}").shifted(),
            SimConfig(restart_overhead_s=float(rng.uniform(*overhead_range))))
