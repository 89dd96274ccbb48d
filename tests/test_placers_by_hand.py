"""Placers on hand-built cluster states: scores and choices worked out by hand.

FGD (Weng et al., ATC '23): a node's fragmentation for a task class m is all of its free
GPU share if m does not fit there, otherwise the free share on GPUs too small for m; the
node's fragmentation is the expectation over the workload's classes; FGD places a job
where that expectation grows least. Best-fit puts a shared-GPU job on the GPU left with
the least free share, ties to the fullest node.
"""

from __future__ import annotations

import numpy as np
import pytest

from autoflow.cluster import ClusterSpec, Node
from autoflow.job import Job
from autoflow.placers import make_placer
from autoflow.state import ClusterState


def cluster_state(*gpus_free: list[int]) -> ClusterState:
    """One node per argument, with that list of free shares per GPU (1000 = idle)."""
    spec = ClusterSpec("hand", [Node(f"n{i}", "V100", len(g)) for i, g in enumerate(gpus_free)])
    state = ClusterState(spec)
    for n, free in enumerate(gpus_free):
        for g, f in enumerate(free):
            if f < 1000:
                state.allocate([(n, (g,), 1000 - f, 0, 0)])
    return state


def req(state: ClusterState, gpus: int = 1, milli: int = 1000):
    return state.compile(Job("j", 0, 1.0, num_gpus=gpus, gpu_milli=milli))


def fgd_with_mix(state: ClusterState, mix: list[tuple[int, int]]):
    """An FGD placer whose target workload is ``mix``: (GPUs, share) per job."""
    fgd = make_placer("fgd")
    fgd.prepare([req(state, g, m) for g, m in mix], state)
    return fgd


# classes: A = 1 x 500 (p 1/2), B = 1 x 1000 (p 1/4), C = 2 x 1000 (p 1/4)
MIX_ABC = [(1, 500), (1, 500), (1, 1000), (2, 1000)]


def test_fgd_shared_gpu_scores_by_hand():
    # one node, GPUs free 1000, 1000, 600, 300 (S = 2900); a 250 share to place
    # before: A fits, unusable share 300 -> 300; B fits, 600 + 300 -> 900; C fits
    #         (2 idle GPUs), 900 -> F = 300/2 + 900/4 + 900/4 = 600
    # on GPU 0 (-> 750): A 300; B fits (1 idle), 750 + 600 + 300 = 1650; C no longer
    #   fits (1 idle GPU): all of S = 2650 -> F = 150 + 412.5 + 662.5 = 1225: +625
    # on GPU 1: the same, +625
    # on GPU 2 (-> 350): A 350 + 300 = 650; B 650; C 650 -> F = 650: +50
    # on GPU 3 (-> 50): A 50; B 600 + 50 = 650; C 650 -> F = 25 + 162.5 + 162.5 = 350: -250
    state = cluster_state([1000, 1000, 600, 300])
    fgd = fgd_with_mix(state, MIX_ABC)
    r = req(state, 1, 250)
    nodes, gpus = [0, 0, 0, 0], [0, 1, 2, 3]
    scores = fgd.gpu_scores(state, r, np.array(nodes), np.array(gpus))
    assert scores == pytest.approx([625, 625, 50, -250], abs=1e-6)
    assert fgd.place(state, r) == [(0, (3,), 250, 0, 0)]


def test_fgd_keeps_a_share_usable_where_best_fit_would_waste_it():
    # classes: A = 1 x 500 (p 3/4), D = 1 x 300 (p 1/4); a 300 share to place
    # node 0: GPUs 1000, 1000, 700; node 1: GPUs 700, 1000. Before, every GPU is usable
    # by both classes: fragmentation 0 everywhere.
    # a 1000 GPU -> 700: still usable by both: +0
    # a 700 GPU -> 400: too small for A: 400 x 3/4 = +300
    state = cluster_state([1000, 1000, 700], [700, 1000])
    fgd = fgd_with_mix(state, [(1, 500)] * 3 + [(1, 300)])
    r = req(state, 1, 300)
    scores = fgd.gpu_scores(state, r, np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 0, 1]))
    assert scores == pytest.approx([0, 0, 300, 300, 0], abs=1e-6)
    # on node 1 alone FGD takes the idle GPU; best-fit takes the tightest one
    state = cluster_state([700, 1000])
    fgd = fgd_with_mix(state, [(1, 500)] * 3 + [(1, 300)])
    assert fgd.place(state, req(state, 1, 300)) == [(0, (1,), 300, 0, 0)]
    assert make_placer("best-fit").place(state, req(state, 1, 300)) == [(0, (0,), 300, 0, 0)]


def test_fgd_whole_gpu_node_scores_by_hand():
    # a 1-GPU whole job; node 0: 2 idle GPUs; node 1: GPUs 1000, 1000, 1000, 300
    # node 0: before 0 (every class fits, no partly used GPU); after, 1 idle GPU left:
    #   A and B fit, C (2 GPUs) does not: all of S = 1000, x 1/4 -> +250
    # node 1: before, A, B and C fit, the 300 GPU is unusable by all: 300; after,
    #   2 idle GPUs left: all fit, still 300 -> +0
    state = cluster_state([1000, 1000], [1000, 1000, 1000, 300])
    fgd = fgd_with_mix(state, MIX_ABC)
    r = req(state, 1)
    assert fgd.node_scores(state, r, np.array([0, 1])) == pytest.approx([250, 0], abs=1e-6)
    p = fgd.place(state, r)
    assert p[0][0] == 1 and len(p[0][1]) == 1
    # best-fit packs on the node left with less free share: node 0 (1000 < 2300)
    assert make_placer("best-fit").place(state, r)[0][0] == 0
    # a 2-GPU job: node 0 is left with nothing free: 0 -> 0, +0; node 1 keeps 1 idle GPU:
    #   A and B still fit (300 x 1/2 + 300 x 1/4 = 225), C does not (S = 1300 x 1/4 = 325):
    #   225 + 325 - 300 = +250
    r2 = req(state, 2)
    assert fgd.node_scores(state, r2, np.array([0, 1])) == pytest.approx([0, 250], abs=1e-6)
    assert fgd.place(state, r2)[0][0] == 0


def test_best_fit_puts_a_shared_job_on_the_tightest_gpu():
    # GPUs free 1000, 600, 400, 800; a 350 share leaves 650, 250, 50, 450: GPU 2
    state = cluster_state([1000, 600, 400, 800])
    bf = make_placer("best-fit")
    assert bf.place(state, req(state, 1, 350)) == [(0, (2,), 350, 0, 0)]
    # a 700 share fits only on GPUs 0 and 3: GPU 3 leaves 100
    assert bf.place(state, req(state, 1, 700)) == [(0, (3,), 700, 0, 0)]


def test_best_fit_breaks_a_tie_on_the_gpu_by_the_fullest_node():
    # node 0: GPUs 1000, 500 (1500 free); node 1: GPUs 500, 0 (500 free). A 500 share
    # leaves 0 on node 0's GPU 1 and on node 1's GPU 0: the fuller node 1 wins
    state = cluster_state([1000, 500], [500, 0])
    assert make_placer("best-fit").place(state, req(state, 1, 500)) == [(1, (0,), 500, 0, 0)]
    assert make_placer("first-fit").place(state, req(state, 1, 500)) == [(0, (0,), 500, 0, 0)]
