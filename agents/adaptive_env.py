"""RuleChoice: the adaptive scheduler's decisions as a Gymnasium environment.

An episode is one run of a sampled workload on a cluster fitted to a sampled load
(``envs.samplers``, the same sources as ``ClusterScheduling-v0``). A step is one choice of
:class:`~agents.adaptive.Adaptive`: which candidate heuristic schedules from now until the
next choice (O(log n) choices a run). The observation is ``envs.workload_features`` at
the choice; the action, the candidate's index.

Reward: the episode's cost is the total job completion time (jobs in the system x time);
with ``objective="wct"``, the total completion time of *units*: each workflow counts as
one unit (in the system from its first submission to its last finish) and each job
outside a workflow as its own (``envs.baseline.unit_cost``).
Each step is charged the cost of its stretch *minus* what the reference policy (default
``las``), replayed on the same episode and seed, spent over the same stretch of time
(``envs.baseline``), divided by the reference's total: an episode's rewards sum to
``1 - JCT / JCT_reference``. Episodes of any size and load then weigh alike, and a
choice is charged with what it changes.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from autoflow.envs.baseline import BaselineCost, unit_cost
from autoflow.envs.workload_features import CLIP, obs_size
from gymnasium import spaces

from autoflow.errors import ConfigError
from autoflow.sim.simulator import SimConfig, Simulator

from .adaptive import CANDIDATES, Adaptive

OBJECTIVES = ("jct", "wct")  # the cost an episode charges: job or unit completion time


class RuleChoiceEnv(gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(self, sampler, candidates: tuple[str, ...] = CANDIDATES,
                 reference: str = "las", placer: str = "best-fit",
                 sim_config: SimConfig | None = None, objective: str = "jct",
                 workflow_features: bool = False):
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got "
                              f"{objective!r}")
        self.objective = objective
        self.workflow_features = workflow_features
        self.sampler = sampler
        self.candidates = tuple(candidates)
        self.reference = f"{reference}+{placer}" if "+" not in reference else reference
        self.placer = placer
        self.sim_config = sim_config or SimConfig()
        self.observation_space = spaces.Box(
            -CLIP, CLIP, (obs_size(len(candidates), workflow_features),), np.float32)
        self.action_space = spaces.Discrete(len(candidates))
        self.sim: Simulator | None = None
        self._refs: dict[int, BaselineCost] = {}  # by reset seed: replays of one episode

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        for _ in range(8):
            workload, cluster = self.sampler.sample(self.np_random)
            cfg = SimConfig(**{**self.sim_config.__dict__,
                               "seed": int(self.np_random.integers(2**31))})
            self.policy = Adaptive(self.placer, None, self.candidates,
                                   workflow_features=self.workflow_features)
            self.sim = Simulator(workload, cluster, self.policy, cfg)
            ref = self._refs.get(seed) if seed is not None else None
            if ref is None:
                ref = BaselineCost(workload, cluster, self.reference, cfg, self.objective)
                if seed is not None:
                    if len(self._refs) > 256:
                        self._refs.clear()
                    self._refs[seed] = ref
            self.ref = ref
            self.sim.begin()
            self._mark = (0.0, 0.0)
            if self.ref.total > 0 and self._advance():
                return self.policy.observe(self.sim.ctx), self._info()
        raise ConfigError("could not draw an episode in which a choice is made")

    def _advance(self) -> bool:
        """Runs the simulation until a choice is pending; False when the run is over."""
        pol, sim = self.policy, self.sim
        while not pol.pending:
            if not sim.step():
                return False
        return True

    def step(self, action):
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        self.policy.switch(self.sim.ctx, int(action))
        more = self._advance()
        sim = self.sim
        sim.account()
        t = sim.env.now if more else max((js.finish for js in sim.jobs), default=sim.env.now)
        cost = self._cost(t)
        ref_now = self.ref.integral(t) if more else self.ref.total
        c0, r0 = self._mark
        reward = -((cost - c0) - (ref_now - r0)) / self.ref.total
        self._mark = (cost, ref_now)
        obs = (self.policy.observe(sim.ctx) if more
               else np.zeros(self.observation_space.shape, np.float32))
        return obs, float(reward), not more, False, self._info()

    def _info(self) -> dict:
        return {"active": self.candidates[self.policy.active_index],
                "completed": self.policy.completed, "jobs": len(self.sim.jobs)}

    def _cost(self, t: float) -> float:
        """The run's cost up to ``t``: seconds of jobs in the system (``jct``), or of
        units, a workflow counting as one (``wct``, ``envs.baseline.unit_cost``)."""
        if self.objective == "wct":
            return unit_cost(self.sim.jobs, t)
        return self.sim.meter.in_system_integral

    def ratio(self) -> float:
        """At the end of an episode: its total cost (JCT, or unit completion time) over
        the reference's."""
        self.sim.account()
        end = max((js.finish for js in self.sim.jobs), default=self.sim.env.now)
        return self._cost(end) / self.ref.total
