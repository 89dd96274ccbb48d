"""LAS in the agent's actions (``envs.las_choice``): replayed one action at a time it must
give las-fcfs's schedule exactly, and it is marked in the observation."""

from __future__ import annotations

import numpy as np
import pytest
from autoflow.agents.decider import LasExpert
from autoflow.envs.cluster_env import ClusterSchedulingEnv
from autoflow.envs.features import CLUSTER_FEATURES, JOB_FEATURES, RUNNING_FEATURES
from autoflow.envs.las_choice import las_action
from simdata import mixed_workload, shared_trace, small_cluster

from autoflow.bench import prepare
from autoflow.placers import make_placer
from autoflow.policies import make_policy
from autoflow.sim.simulator import Simulator


def _timeline(workload, cluster, policy) -> tuple[list, list]:
    """Every start and preemption in order, and each job's finish."""
    sim = Simulator(workload, cluster, policy)
    events = []
    start, preempt = sim.core.start, sim.core.preempt

    def logged_start(js, placement):
        events.append((sim.env.now, "start", js.idx))
        start(js, placement)

    def logged_preempt(js):
        events.append((sim.env.now, "preempt", js.idx))
        preempt(js)

    sim.core.start, sim.core.preempt = logged_start, logged_preempt
    res = sim.run()
    return sorted(events), [js.finish for js in res.jobs]


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_the_las_expert_gives_las_fcfs_schedule_exactly(seed):
    w = mixed_workload(300, seed=seed, span=3000.0)  # heavy load: many preemptions
    las = _timeline(w, small_cluster(), make_policy("las-fcfs"))
    expert = _timeline(w, small_cluster(), LasExpert(make_placer("best-fit")))
    assert any(kind == "preempt" for _, kind, _ in las[0])
    assert expert == las


def test_the_las_expert_gives_las_fcfs_schedule_on_a_real_trace():
    trace = shared_trace("itp", "cluster06.csv")
    w, spec = prepare(f"itp:{trace}", "itp-8gpu", 1.1, 0)
    assert _timeline(w, spec, LasExpert(make_placer("best-fit"))) == \
        _timeline(w, spec, make_policy("las-fcfs"))


def test_las_choice_is_marked_in_the_observation():
    env = ClusterSchedulingEnv(workloads="builtin:philly-mix-small", jobs=(60, 80), load=(1.3, 1.3))
    obs, _ = env.reset(seed=2)
    cols = (JOB_FEATURES.index("las_choice"), RUNNING_FEATURES.index("las_victim"),
            CLUSTER_FEATURES.index("las_waits"))
    seen = set()
    for _ in range(300):
        d = env.decision
        a = las_action(d, env.obs_config)
        q, w = env.obs_config.queue_slots, env.obs_config.wait_action
        marks = (obs["jobs"][:, cols[0]].sum() + obs["running"][:, cols[1]].sum()
                 + obs["cluster"][cols[2]])
        assert marks == 1.0
        if a < q:
            assert obs["jobs"][a, cols[0]] == 1.0
            seen.add("start")
        elif a < w:
            assert obs["running"][a - q, cols[1]] == 1.0
            seen.add("preempt")
        else:
            assert obs["cluster"][cols[2]] == 1.0
            seen.add("wait")
        assert env.action_masks()[a]
        obs, _, done, _, _ = env.step(a)
        if done:
            obs, _ = env.reset(seed=int(np.random.default_rng(len(seen)).integers(100)))
    assert {"start", "wait"} <= seen
