"""Shared test data: small workloads and clusters, and the path to the real traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoflow.cluster import ClusterSpec, Node
from autoflow.job import INFERENCE, TRAINING, Job
from autoflow.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_TRACES = ROOT.parent / "shared" / "traces"


def shared_trace(*parts: str) -> Path:
    p = SHARED_TRACES.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real trace {p} not available")
    return p


def mixed_workload(n: int = 120, seed: int = 0, span: float = 4000.0) -> Workload:
    """Every shape the simulator handles: gangs wider than a node, shared GPUs, GPU-type
    constraints, CPU-only jobs, inference services."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        r = rng.random()
        kind = INFERENCE if rng.random() < 0.25 else TRAINING
        if r < 0.08:
            gpus, milli = 16, 1000  # wider than any node: whole nodes
        elif r < 0.25:
            gpus, milli = 1, int(rng.choice([250, 500, 700]))
        elif r < 0.30:
            gpus, milli = 0, 0
        else:
            gpus, milli = int(rng.choice([1, 2, 4, 8])), 1000
        types = ("T4",) if (gpus == 1 and rng.random() < 0.2) else ()
        jobs.append(Job(f"j{i}", float(rng.uniform(0, span)), float(rng.lognormal(6.5, 1.2)),
                        num_gpus=gpus, gpu_milli=milli, gpu_types=types, kind=kind,
                        cpu_milli=int(rng.choice([0, 2000, 8000])),
                        memory_mib=int(rng.choice([0, 4096])), user=f"u{i % 5}"))
    return Workload(jobs, source="test:mixed")


def small_cluster() -> ClusterSpec:
    nodes = [Node(f"v{i}", "V100", 8, 64000, 262144) for i in range(4)]
    nodes += [Node(f"t{i}", "T4", 2, 16000, 65536) for i in range(3)]
    return ClusterSpec("test-small", nodes)
