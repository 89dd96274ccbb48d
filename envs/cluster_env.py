"""ClusterScheduling-v0: schedule the jobs of a GPU cluster, one decision at a time.

## Description

A thin adapter over autoflow's simulator, the same one ``autoflow bench`` runs: jobs
arrive from a real trace window or a generated workload, run on a cluster of GPU nodes
(gangs, shared GPUs, GPU types, CPU and memory), and leave when done. Decisions happen
at events — an arrival, a completion, a node failure, a running job's attained service
crossing into the next LAS level — never on a clock. At a decision
the agent starts one waiting job, preempts one running training job, or waits for the
next event; several actions may happen at one instant, one per step.

## Action Space

``Discrete(Q + R + 1)`` with ``Q = queue_slots``, ``R = running_slots``:
``0..Q-1`` start the job in queue slot *i*; ``Q..Q+R-1`` preempt the running job in slot
*j* (it goes back to the queue and pays the restart overhead); ``Q+R`` wait.
``action_masks()`` allows exactly the starts that the shared feasibility function says
fit now; preemption only when enabled, of a preemptible job that did not start at this
instant, and only while a shown waiting job does not fit; a job preempted at an instant
cannot restart at that instant (no thrashing). Waiting is not allowed while the cluster
is idle and a job fits (no deadlock). A masked action changes nothing: the same
decision comes back with a reward of ``-invalid_penalty`` and ``info["invalid_action"]``.

## Observation Space

``Dict(jobs=Box(Q, F_job), running=Box(R, F_run), cluster=Box(F_cluster))``, all in
``[-10, 10]``; its size depends on neither the cluster nor the queue. ``jobs`` is a window
of the queue: its head (fit or not) and jobs that fit now, earliest and shortest by
predicted duration; per job: GPUs, share, type constraint, kind, waiting time, attained
service, predicted duration and predicted time left (from the history estimator, or with
``estimator="ssl"`` the duration predictor: ``envs.estimator``), SLO slack. ``running``: the likeliest victims, most attained service first. ``cluster``: free
share, idle GPUs and nodes, free capacity of the four largest GPU types, fragmentation,
queue length and how many jobs are not shown, demand summaries. The true duration of a
job is never observed. Feature names: ``envs.features.JOB_FEATURES`` etc.

## Rewards

``objective="jct"`` (default): ``-(jobs in the system) x (time elapsed)`` between
decisions, which sums over an episode to minus the total job completion time;
``"slowdown"``: the same with each job weighted by ``1 / max(duration, 10 s)`` (sums to
minus the total bounded slowdown); ``"makespan"``: ``-(time elapsed)`` while jobs
remain. Time is in hours; the reward is multiplied by ``reward_scale``. Each inference
job that starts later than its SLO costs ``slo_penalty`` more.

## Starting State

An episode is drawn from the workload sampler with the environment's ``np_random``: a
window of a trace (or a fresh built-in workload) and an offered load, with the cluster
(and, where resizing falls short, the arrival times) fitted to that load
(``autoflow.load.fit_load``). The simulation runs to the first decision.

## Episode End

Terminated when every job has finished. Truncated after ``max_steps`` decisions, if set
(the return then no longer sums to the total completion time).

## Arguments

``gymnasium.make("autoflow/ClusterScheduling-v0", workloads="builtin:philly-mix-small",
objective="jct", reward_scale=0.01, slo_penalty=1.0, preemption=True, queue_slots=16,
running_slots=8, head_slots=4, jobs=(150, 400), load=(0.7, 1.3), max_steps=None,
placer="best-fit", invalid_penalty=1.0, sim_config=None, reward_baseline=None,
estimator="history")``. ``workloads`` is a comma-separated list of sources
(``envs.samplers.make_sampler``) or a sampler object.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from autoflow.errors import ConfigError
from autoflow.placers import make_placer
from autoflow.policies import parse_policy
from autoflow.policies.base import Policy
from autoflow.sim.simulator import SimConfig, Simulator

from .baseline import BaselineCost
from .estimator import EstimatedSeat, check_estimator, make_estimator
from .features import CLIP, CLUSTER_FEATURES, JOB_FEATURES, RUNNING_FEATURES
from .levels import agent_queue_key, arm_level_wakeup
from .obs_config import ObsConfig
from .observation import Decision, Observer
from .samplers import EpisodeSpec, make_sampler

OBJECTIVES = ("jct", "slowdown", "makespan")


class AgentSeat(EstimatedSeat, Policy):
    """The simulator's policy while an agent drives it: every pass with waiting jobs is
    handed over to the agent (``pending``); it starts nothing by itself."""

    name = "agent"
    preemptive = True

    def __init__(self, placer, estimator: str = "history"):
        super().__init__(placer)
        self.pending = False
        self.ssl = make_estimator(estimator)

    def queue_key(self, js) -> tuple:
        self.joined(js)
        return agent_queue_key(js)

    def schedule(self, ctx) -> None:
        self.refresh(ctx)
        self.pending = True

    def on_start(self, ctx, js) -> None:
        arm_level_wakeup(ctx, js)


class ClusterSchedulingEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, workloads="builtin:philly-mix-small", objective: str = "jct",
                 reward_scale: float = 0.01, slo_penalty: float = 1.0,
                 preemption: bool = True, queue_slots: int = 16, running_slots: int = 8,
                 head_slots: int = 4, jobs: tuple[int, int] = (150, 400),
                 load: tuple[float, float] = (0.7, 1.3), max_steps: int | None = None,
                 placer: str = "best-fit", invalid_penalty: float = 1.0,
                 sim_config: SimConfig | None = None, reward_baseline: str | None = None,
                 estimator: str = "history"):
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
        if reward_baseline:
            if "+" not in reward_baseline:
                reward_baseline = f"{reward_baseline}+{placer}"
            parse_policy(reward_baseline)  # an unknown name fails here, not at reset
        self.reward_baseline = reward_baseline or None
        self.objective = objective
        self.reward_scale = float(reward_scale)
        self.slo_penalty = float(slo_penalty)
        self.max_steps = max_steps
        self.invalid_penalty = float(invalid_penalty)
        self.placer = placer
        self.sim_config = sim_config or SimConfig()
        self.obs_config = ObsConfig(queue_slots=queue_slots, head_slots=head_slots,
                                    running_slots=running_slots, preemption=preemption,
                                    estimator=check_estimator(estimator))
        self.sampler = (make_sampler(workloads, EpisodeSpec(tuple(jobs), tuple(load)))
                        if isinstance(workloads, (str, list)) else workloads)
        self.observer = Observer(self.obs_config)
        q, r = queue_slots, running_slots
        self.observation_space = spaces.Dict({
            "jobs": spaces.Box(-CLIP, CLIP, (q, len(JOB_FEATURES)), np.float32),
            "running": spaces.Box(-CLIP, CLIP, (r, len(RUNNING_FEATURES)), np.float32),
            "cluster": spaces.Box(-CLIP, CLIP, (len(CLUSTER_FEATURES),), np.float32),
        })
        self.action_space = spaces.Discrete(self.obs_config.n_actions)
        self.sim: Simulator | None = None
        self.decision: Decision | None = None

    # -- gymnasium API ------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        workload, cluster = self.sampler.sample(self.np_random)
        cfg = SimConfig(**{**self.sim_config.__dict__,
                           "seed": int(self.np_random.integers(2**31))})
        self.seat = AgentSeat(make_placer(self.placer), self.obs_config.estimator)
        self.sim = Simulator(workload, cluster, self.seat, cfg)
        self.baseline = (BaselineCost(workload, cluster, self.reward_baseline, cfg,
                                      self.objective) if self.reward_baseline else None)
        self.observer = Observer(self.obs_config)
        self.steps = 0
        self.invalid_actions = 0
        self.sim.begin()
        self._mark = self._progress()
        self._next_decision(here=False)
        return self._obs(), self._info()

    def step(self, action):
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        action = int(action)
        if self.decision is None:
            raise RuntimeError("the episode is over: call reset()")
        self.steps += 1
        if not self.observer.apply(self.sim.ctx, self.decision, action):
            # not allowed now: nothing happens, the same decision comes back, at a cost
            self.invalid_actions += 1
            return (self._obs(), -self.invalid_penalty, False,
                    bool(self.max_steps and self.steps >= self.max_steps),
                    self._info() | {"invalid_action": True})
        self._next_decision(here=action != self.obs_config.wait_action)
        terminated = self.decision is None
        reward = self._reward(terminated)
        truncated = bool(self.max_steps and self.steps >= self.max_steps and not terminated)
        return self._obs(), reward, terminated, truncated, self._info()

    def action_masks(self) -> np.ndarray:
        if self.decision is None:
            m = np.zeros(self.obs_config.n_actions, dtype=bool)
            m[self.obs_config.wait_action] = True
            return m
        return self.decision.mask.copy()

    # -- driving the simulator ----------------------------------------------------------
    def _next_decision(self, here: bool) -> None:
        """Runs events until the agent has a choice to make, or the run is over. With
        ``here``, first looks again at the current instant (after a start or preemption)."""
        sim = self.sim
        while True:
            if here and len(sim.waiting):
                d = self.observer.observe(sim.ctx)
                if d.can_act:
                    self.decision = d
                    return
            here = True
            self.seat.pending = False
            while not self.seat.pending:  # until a scheduling pass hands over
                if not sim.step():
                    self.decision = None
                    return

    # -- reward -------------------------------------------------------------------------
    def _progress(self) -> tuple[float, float, float, int]:
        sim = self.sim
        sim.account()
        # the clock stops at the last completion (stale timers may fire after it)
        t = (sim.env.now if not sim.all_done()
             else max((js.finish for js in sim.jobs), default=sim.env.now))
        m = sim.meter
        return (m.in_system_integral, m.slowdown_integral, t, m.slo_misses)

    def _reward(self, terminated: bool) -> float:
        now = self._progress()
        jct, slow, t, misses = (a - b for a, b in zip(now, self._mark))
        if self.objective == "jct":
            cost = jct / 3600.0
        elif self.objective == "slowdown":
            cost = slow
        else:
            cost = t / 3600.0
        if self.baseline is not None:  # minus the reference policy's cost meanwhile
            b = self.baseline
            ref = (b.total if terminated else b.integral(now[2])) - b.integral(self._mark[2])
            cost -= ref if self.objective == "slowdown" else ref / 3600.0
        self._mark = now
        return float(-cost * self.reward_scale - self.slo_penalty * misses)

    def _obs(self) -> dict[str, np.ndarray]:
        if self.decision is None:  # terminal: an empty observation of the right shape
            return {k: np.zeros(s.shape, dtype=np.float32)
                    for k, s in self.observation_space.spaces.items()}
        return {k: v.copy() for k, v in self.decision.obs.items()}

    def _info(self) -> dict:
        sim = self.sim
        return {"time": float(sim.env.now), "waiting": len(sim.waiting),
                "running": len(sim.running), "done": sim.core.done, "jobs": len(sim.jobs),
                "slo_misses": sim.meter.slo_misses, "invalid_action": False}
