"""The Gymnasium environment: checkers, determinism, masks, rewards, what it hides."""

from __future__ import annotations

from dataclasses import replace

import autoflow.envs
import gymnasium as gym
import numpy as np
import pytest
from autoflow.envs.cluster_env import ClusterSchedulingEnv
from autoflow.envs.features import CLUSTER_FEATURES, JOB_FEATURES
from autoflow.envs.obs_config import ObsConfig
from autoflow.envs.observation import Observer
from autoflow.envs.samplers import make_sampler
from autoflow.envs.window import search, walk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simdata import mixed_workload, small_cluster

from autoflow.core.jobstate import RUNNING
from autoflow.feasibility import fits_now
from autoflow.job import Job
from autoflow.sim.simulator import SimConfig
from autoflow.workload import Workload


class FixedSampler:
    """Always the same episode (for tests that need to know the workload)."""

    def __init__(self, workload, cluster):
        self.workload, self.cluster = workload, cluster

    def sample(self, rng):
        return self.workload, self.cluster


def small_env(**kw) -> ClusterSchedulingEnv:
    kw.setdefault("jobs", (30, 60))
    return ClusterSchedulingEnv(workloads="builtin:philly-mix-small", **kw)


def test_registered_and_passes_both_checkers():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(autoflow.envs.ENV_ID, workloads="builtin:philly-mix-small", jobs=(30, 60))
    check_env(env.unwrapped)
    sb3_check_env(small_env(), warn=False)


def _rollout(env, seed: int, steps: int = 300):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for _ in range(steps):
        a = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, r, term, trunc, info = env.step(a)
        trace.append((obs, r, term, info["time"]))
        if term or trunc:
            break
    return trace


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_an_episode_is_deterministic_under_a_seed():
    a, b = _rollout(small_env(), 5), _rollout(small_env(), 5)
    assert len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    c = _rollout(small_env(), 6)
    assert not all(_same(x, y) for x, y in zip(a, c))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), preemption=st.booleans())
def test_masks_never_allow_an_infeasible_action(seed, preemption):
    env = ClusterSchedulingEnv(workloads=FixedSampler(mixed_workload(60, seed=seed % 7),
                                                      small_cluster()),
                               preemption=preemption, queue_slots=6, running_slots=4,
                               head_slots=2)
    cfg = env.obs_config
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(400):
        d, mask = env.decision, env.action_masks()
        ctx = env.sim.ctx
        for i in np.flatnonzero(mask[: cfg.queue_slots]):
            js = d.queue[i]
            assert js is not None and js.status == "waiting"
            assert fits_now(ctx.state, js.req)
        for j in np.flatnonzero(mask[cfg.queue_slots: cfg.wait_action]):
            r = d.running[j]
            assert preemption and r is not None and r.status == RUNNING and r.preemptible
        assert mask.any()
        if not ctx.running:  # never wait with an idle cluster while a job fits
            assert not (mask[cfg.wait_action] and mask[: cfg.queue_slots].any())
        a = int(rng.choice(np.flatnonzero(mask)))
        _, _, term, _, info = env.step(a)
        assert not info["invalid_action"]
        if term:
            assert info["done"] == info["jobs"]
            break


def test_a_masked_action_changes_nothing_and_costs_the_penalty():
    env = small_env(invalid_penalty=2.5)
    env.reset(seed=1)
    bad = int(np.flatnonzero(~env.action_masks())[0])
    before = env.sim.env.now, len(env.sim.waiting)
    _, r, term, _, info = env.step(bad)
    assert info["invalid_action"] and r == -2.5 and not term
    assert (env.sim.env.now, len(env.sim.waiting)) == before


def test_jct_rewards_sum_to_minus_the_total_completion_time():
    w = mixed_workload(80, seed=3)
    env = ClusterSchedulingEnv(workloads=FixedSampler(w, small_cluster()), reward_scale=1.0,
                               slo_penalty=0.0)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    total, term = 0.0, False
    while not term:
        _, r, term, _, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        total += r
    jct = sum(js.finish - js.submit for js in env.sim.jobs)
    assert total == pytest.approx(-jct / 3600.0, rel=1e-9)


@pytest.mark.parametrize("objective", ["jct", "slowdown", "makespan"])
def test_a_relative_reward_is_zero_for_the_baseline_and_sums_to_the_difference(objective):
    from autoflow.envs.las_choice import las_action

    from autoflow.job import BOUNDED_SLOWDOWN_MIN_S
    from autoflow.policies import make_policy
    from autoflow.sim.simulator import Simulator

    w, c = mixed_workload(80, seed=3), small_cluster()
    env = ClusterSchedulingEnv(workloads=FixedSampler(w, c), reward_scale=1.0,
                               slo_penalty=0.0, objective=objective, reward_baseline="las-fcfs")
    env.reset(seed=0)
    rewards, term = [], False
    while not term:  # play las-fcfs's own choices: nothing to gain or lose, at any step
        _, r, term, _, _ = env.step(las_action(env.decision, env.obs_config))
        rewards.append(r)
    assert len(rewards) > 20 and max(abs(r) for r in rewards) < 1e-9

    def cost(jobs):
        if objective == "makespan":
            return max(js.finish for js in jobs) / 3600.0
        if objective == "slowdown":
            return sum((js.finish - js.submit) / max(js.duration, BOUNDED_SLOWDOWN_MIN_S)
                       for js in jobs)
        return sum(js.finish - js.submit for js in jobs) / 3600.0

    env.reset(seed=0)
    las_run = Simulator(w, c, make_policy("las-fcfs"), env.sim.config).run()
    rng = np.random.default_rng(1)
    total, term = 0.0, False
    while not term:
        _, r, term, _, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        total += r
    assert total == pytest.approx(-(cost(env.sim.jobs) - cost(las_run.jobs)), rel=1e-6,
                                  abs=1e-9)
    assert total != 0.0  # random play is not las-fcfs's schedule


def test_an_unknown_reward_baseline_is_refused_when_the_env_is_made():
    from autoflow.errors import ConfigError

    with pytest.raises(ConfigError, match="nosuch"):
        ClusterSchedulingEnv(workloads="builtin:philly-mix-small", reward_baseline="nosuch")


def test_slo_misses_are_penalised():
    jobs = [Job("big", 0.0, 5000.0, num_gpus=8), Job("inf", 1.0, 100.0, num_gpus=8,
                                                       kind="inference", slo_s=5.0)]
    from autoflow.cluster import ClusterSpec, Node
    cluster = ClusterSpec("one", [Node("n0", "V100", 8, 0, 0)])
    env = ClusterSchedulingEnv(workloads=FixedSampler(Workload(jobs, source="t"), cluster),
                               reward_scale=0.0, slo_penalty=3.0, preemption=False)
    env.reset(seed=0)
    rewards = []
    term = False
    while not term:
        _, r, term, _, info = env.step(int(np.flatnonzero(env.action_masks())[0]))
        rewards.append(r)
    assert info["slo_misses"] == 1 and sum(rewards) == pytest.approx(-3.0)


def test_the_observation_never_reveals_the_true_duration():
    base = mixed_workload(50, seed=4)
    # the same jobs with their durations shuffled (the workload median, which the history
    # estimator falls back to before any job has finished, stays the same)
    durations = np.random.default_rng(0).permutation([j.duration for j in base.jobs])
    other = Workload([replace(j, duration=float(d)) for j, d in zip(base.jobs, durations)],
                     source="t")
    envs = [ClusterSchedulingEnv(workloads=FixedSampler(w, small_cluster())) for w in (base, other)]
    obs = [e.reset(seed=0)[0] for e in envs]
    # same decisions until the first completion, which is when durations become visible
    compared = 0
    for _ in range(60):
        assert _same(obs[0], obs[1])
        compared += 1
        a = int(np.flatnonzero(envs[0].action_masks())[0])
        assert np.array_equal(envs[0].action_masks(), envs[1].action_masks())
        obs = [e.step(a)[0] for e in envs]
        if any(e.sim.core.done for e in envs):
            break
    assert compared >= 3


def test_observation_size_does_not_depend_on_cluster_or_queue():
    shapes = set()
    for src in ("builtin:philly-mix-small", "builtin:shared-gpu"):
        env = ClusterSchedulingEnv(workloads=src, jobs=(20, 400), load=(0.5, 3.0))
        obs, _ = env.reset(seed=0)
        shapes.add(tuple((k, v.shape) for k, v in sorted(obs.items())))
    assert len(shapes) == 1


def test_the_window_shows_the_head_and_counts_hidden_jobs():
    env = ClusterSchedulingEnv(workloads="builtin:philly-mix-small", jobs=(300, 300),
                               load=(3.0, 3.0), queue_slots=4, head_slots=2)
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    seen_hidden = False
    for _ in range(500):
        d = env.decision
        head = env.sim.waiting.head()
        assert head in d.queue
        hidden = len(env.sim.waiting) - sum(js is not None for js in d.queue)
        seen_hidden |= hidden > 0
        _, _, term, _, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        if term:
            break
    assert seen_hidden


def test_a_short_queue_walked_in_one_pass_gives_the_window_of_the_search():
    """Up to ``scan_limit`` waiting jobs the window is found in one pass over the queue;
    the shape-skipping search used for long queues must find the same jobs."""
    env = ClusterSchedulingEnv(workloads="builtin:philly-mix", jobs=(150, 200),
                               load=(1.3, 1.3))
    env.reset(seed=4)
    obs, ctx, c = env.observer, env.sim.ctx, env.obs_config
    rng = np.random.default_rng(4)
    compared = with_reach = 0
    for _ in range(1500):
        if env.decision is None:
            break
        if 0 < len(ctx.waiting) <= c.scan_limit:
            obs.observe(ctx)  # sets the reachable states of this decision
            seen = {js.idx for js in ctx.waiting.first(c.head_slots)}
            n_reach = min(c.reach_slots, c.queue_slots - len(seen))
            states, gone = obs._reach, obs._preempted_now
            walked = walk(ctx, seen, n_reach, states, gone)
            assert walked == search(ctx, c, seen, n_reach, states, gone)
            compared += 1
            with_reach += bool(walked[1])
        _, _, term, trunc, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        if term or trunc:
            break
    assert compared > 100 and with_reach > 0


def test_samplers_hold_out_the_end_of_a_trace(tmp_path):
    from autoflow.envs.samplers import EpisodeSpec

    p = tmp_path / "t.csv"
    p.write_text("job_id,submission_time,duration,num_gpu\n" + "".join(
        f"{i},{i * 60},{100 + i},1\n" for i in range(100)))
    train = make_sampler(f"itp:{p}", EpisodeSpec((10, 10), part=(0.0, 0.8))).samplers[0]
    val = make_sampler(f"itp:{p}", EpisodeSpec((10, 10), part=(0.8, 1.0))).samplers[0]
    assert {j.job_id for j in train.jobs}.isdisjoint({j.job_id for j in val.jobs})
    assert len(train.jobs) == 80 and len(val.jobs) == 20


def test_obs_config_rejects_a_window_without_slots():
    from autoflow.envs.observation import Observer

    with pytest.raises(ValueError):
        Observer(ObsConfig(queue_slots=0))


def test_kept_rows_equal_rows_computed_afresh():
    """Rows are kept per queue stint and run segment (``envs.rows``): at every decision
    of a run with starts, preemptions and failures, the observation equals one built by
    an observer that has kept nothing."""
    env = ClusterSchedulingEnv(workloads="builtin:philly-mix,builtin:shared-gpu",
                               jobs=(80, 120), sim_config=SimConfig(
                                   failure_rate_per_node_day=3.0, repair_time_s=1800.0))
    env.reset(seed=11)
    rng = np.random.default_rng(11)
    compared = preempted = 0
    for _ in range(3000):
        kept = env.decision
        if kept is not None:
            fresh = Observer(env.obs_config)  # same instant: the same no-restart set
            ctx = env.sim.ctx
            ctx.cycle.instant(fresh.scratch_key, dict, ctx.now)["preempted"] = set(
                env.observer._preempted_now)
            again = fresh.observe(env.sim.ctx)
            for k in kept.obs:
                assert np.array_equal(kept.obs[k], again.obs[k]), k
            assert np.array_equal(kept.mask, again.mask)
            compared += 1
        allowed = np.flatnonzero(env.action_masks())
        action = int(allowed[rng.integers(len(allowed))])
        preempted += env.obs_config.queue_slots <= action < env.obs_config.wait_action
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
    assert compared > 2000 and preempted > 50


def test_a_queue_that_fits_in_the_window_is_shown_whole_in_queue_order():
    env = small_env(jobs=(60, 90))
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    shown_whole = 0
    for _ in range(600):
        d, waiting = env.decision, env.sim.waiting
        if d is not None and len(waiting) <= env.obs_config.queue_slots:
            assert [js for js in d.queue if js is not None] == list(waiting)
            assert d.obs["cluster"][CLUSTER_FEATURES.index("hidden_log")] == 0
            shown_whole += 1
        allowed = np.flatnonzero(env.action_masks())
        _, _, term, trunc, _ = env.step(int(allowed[rng.integers(len(allowed))]))
        if term or trunc:
            env.reset()
    assert shown_whole > 100


def _predictable(tmp_path):
    """Jobs whose run times only a (perfect, constructed) predictor knows, that one
    predictor's folder, and one node on which they queue."""
    from test_ssl_policies import _perfect

    from autoflow.cluster import ClusterSpec, Node

    levels = {k: 100.0 * (1 + (7 * k) % 23) for k in range(20)}
    jobs = [Job(f"j{k}", 0.0, levels[k], num_gpus=1, cpu_milli=1000 * k)
            for k in range(len(levels))]  # all at once: a queue of 20 on 2 GPUs
    _perfect(tmp_path / "perfect", levels)
    return Workload(jobs, source="t"), ClusterSpec("one", [Node("n", "V100", 2)]), levels


def _shown_predictions(obs, queue):
    col = JOB_FEATURES.index("predicted_log")
    return {js.job.job_id: float(obs["jobs"][i, col]) for i, js in enumerate(queue)
            if js is not None}


def test_an_ssl_estimator_shows_the_predictors_durations(tmp_path):
    w, cluster, levels = _predictable(tmp_path)
    first, shown = {}, {}
    for est in ("history", f"ssl={tmp_path / 'perfect'}"):
        env = ClusterSchedulingEnv(workloads=FixedSampler(w, cluster), estimator=est)
        obs, _ = env.reset(seed=0)
        first[est] = _shown_predictions(obs, env.decision.queue)
        for _ in range(6):  # a few starts or waits, never a preemption
            shown.setdefault(est, {}).update(_shown_predictions(obs, env.decision.queue))
            starts = np.flatnonzero(env.action_masks()[: env.obs_config.queue_slots])
            obs, *_ = env.step(int(starts[0]) if starts.size else env.obs_config.wait_action)
    ssl = shown[f"ssl={tmp_path / 'perfect'}"]
    assert len(ssl) >= 16
    for job_id, v in ssl.items():  # predicted_log = log1p(minutes) / 5, at attained 0
        assert v == pytest.approx(np.log1p(levels[int(job_id[1:])] / 60.0) / 5.0, abs=1e-6)
    assert len(set(first["history"].values())) == 1  # history: nothing completed yet
    assert len(set(first[f"ssl={tmp_path / 'perfect'}"].values())) == 16


def test_a_decider_reads_the_estimator_it_was_given(tmp_path):
    from autoflow.agents.decider import LasExpert

    from autoflow.placers import make_placer
    from autoflow.sim.simulator import Simulator

    w, cluster, levels = _predictable(tmp_path)
    seen = {}

    class Watching(LasExpert):
        def decide(self, d, ctx):
            seen.update(_shown_predictions(d.obs, d.queue))
            return super().decide(d, ctx)

    pol = Watching(make_placer("best-fit"), ObsConfig(estimator=f"ssl={tmp_path / 'perfect'}"))
    res = Simulator(w, cluster, pol, SimConfig(check_invariants=True)).run()
    assert all(js.finish is not None for js in res.jobs)
    assert len(seen) >= 10
    for job_id, v in seen.items():  # none preempted (LAS's first level holds them all)
        assert v == pytest.approx(np.log1p(levels[int(job_id[1:])] / 60.0) / 5.0, abs=1e-6)


def test_a_bad_estimator_is_one_clear_error(tmp_path):
    from autoflow.errors import ConfigError

    with pytest.raises(ConfigError, match="estimator must be history, ssl or ssl=PATH"):
        ClusterSchedulingEnv(workloads="builtin:philly-mix-small", estimator="oracle")
    with pytest.raises(ConfigError, match="no such folder"):
        ClusterSchedulingEnv(workloads="builtin:philly-mix-small",
                             estimator=f"ssl={tmp_path / 'none'}")
