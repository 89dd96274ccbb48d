"""The feasibility function's shortcuts agree with its numpy definition.

``fits_now`` scans Python lists on small clusters, ``ClusterState`` keeps running totals
that the observation and ``headroom`` read instead of summing arrays, and
``SchedContext.fits`` answers from headroom and from requirements that fit before
asking ``fits_now``. Random allocations, releases and node failures; after each, every
shortcut must give what the arrays say.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simdata import small_cluster

from autoflow.cluster import ClusterSpec, Node
from autoflow.feasibility import fit_node, fit_nodes, headroom, node_mask
from autoflow.job import Job
from autoflow.placers import make_placer
from autoflow.policies import make_policy
from autoflow.sim.simulator import Simulator
from autoflow.state import ClusterState, Req
from autoflow.workload import Workload


def _cluster(rng: np.random.Generator) -> ClusterSpec:
    nodes = []
    for i in range(int(rng.integers(1, 12))):
        tracked = rng.random() < 0.7
        nodes.append(Node(f"n{i}", str(rng.choice(["V100", "T4", "A100"])),
                          int(rng.choice([0, 1, 2, 4, 8])),
                          int(rng.choice([16000, 64000])) if tracked else 0,
                          int(rng.choice([65536, 262144])) if tracked else 0))
    return ClusterSpec("random", nodes)


def _req(state: ClusterState, rng: np.random.Generator) -> Req:
    return state.compile(_job(rng, "j"))


def _job(rng: np.random.Generator, name: str) -> Job:
    r = rng.random()
    gpus, milli = ((0, 0) if r < 0.15 else (1, int(rng.choice([100, 300, 500, 900])))
                   if r < 0.45 else (int(rng.choice([1, 2, 3, 4, 8])), 1000))
    types = tuple(rng.choice(["V100", "T4", "A100"], size=int(rng.integers(0, 3)),
                             replace=False))
    return Job(name, 0.0, 1.0, num_gpus=gpus, gpu_milli=milli or 1000, gpu_types=types,
               cpu_milli=int(rng.choice([0, 1000, 20000])),
               memory_mib=int(rng.choice([0, 1024, 100000])))


def _frag(state: ClusterState) -> float:
    live = state.gpu_free[state.up]
    free = live[live > 0]
    return float(free[free < 1000].sum()) / int(free.sum()) if free.sum() else 0.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_scan_totals_and_headroom_agree_with_the_arrays(seed):
    rng = np.random.default_rng(seed)
    state = ClusterState(_cluster(rng))
    placer = make_placer("best-fit")
    placed = []
    for _ in range(40):
        op = rng.random()
        if op < 0.55:
            req = _req(state, rng)
            if req.num_gpus <= state.widest(req.types_key):
                p = placer.place(state, req)
                if p is not None:
                    state.allocate(p)
                    placed.append(p)
        elif op < 0.85 and placed:
            state.release(placed.pop(int(rng.integers(len(placed)))))
        else:
            node = int(rng.integers(state.num_nodes))
            state.set_up(node, not bool(state.up[node]))
        state.check_totals()
        assert state.fragmentation() == _frag(state)
        for _ in range(6):
            req = _req(state, rng)
            every = np.flatnonzero(node_mask(state, req))  # the scans find the same nodes
            assert fit_node(state, req) == (int(every[0]) if len(every) else -1), req
            assert fit_nodes(state, req).tolist() == every.tolist(), req
        for key, allowed in enumerate(state.type_masks):  # every type constraint seen
            m = state.up & allowed
            assert headroom(state, key) == (
                int(state.free_milli[m].sum()), int(state.gpu_free[m].max(initial=-1)),
                int(state.cpu_free[m].max(initial=0)), int(state.mem_free[m].max(initial=0)))


def test_copies_keep_their_own_totals_and_scans():
    state = ClusterState(small_cluster())
    req = state.compile(Job("j", 0.0, 1.0, num_gpus=8))
    copy = state.copy()
    placements = []
    while (p := make_placer("first-fit").place(copy, req)) is not None:
        copy.allocate(p)
        placements.append(p)
    assert placements and fit_node(copy, req) == -1
    assert fit_node(state, req) == 0 and state.whole_total == state.total_milli // 1000
    copy.check_totals()
    state.check_totals()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_context_fits_is_fits_now(seed):
    """``SchedContext.fits`` (headroom, requirements known to fit, answers kept while
    the node they were found on keeps its capacity) equals ``node_mask`` for every job,
    in random order, on random states of a random cluster with nodes failing."""
    rng = np.random.default_rng(seed)
    cluster = _cluster(rng)
    probe = ClusterState(cluster)
    jobs = []
    while len(jobs) < 60:
        job = _job(rng, f"j{len(jobs)}")
        req = probe.compile(job)
        if req.num_gpus <= probe.widest(req.types_key) and node_mask(probe, req).any():
            jobs.append(job)  # a single-node job that can run on this cluster
    sim = Simulator(Workload(jobs, source="test"), cluster, make_policy("fifo"))
    placer = make_placer("best-fit")
    placed = []
    for _ in range(12):
        for _ in range(3):
            js = sim.jobs[int(rng.integers(len(sim.jobs)))]
            p = placer.place(sim.state, js.req)
            if rng.random() < 0.15:  # a node fails or comes back
                node = int(rng.integers(sim.state.num_nodes))
                sim.state.set_up(node, not bool(sim.state.up[node]))
            elif p is not None and rng.random() < 0.7:
                sim.state.allocate(p)
                placed.append(p)
            elif placed:
                sim.state.release(placed.pop())
        sim.ctx.begin_pass(0.0)
        for i in rng.permutation(len(sim.jobs)):
            js = sim.jobs[i]
            assert sim.ctx.fits(js) == bool(node_mask(sim.state, js.req).any()), js.req
