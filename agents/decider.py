"""Policies that decide through the agent's observation and action space.

``DeciderPolicy`` runs in the simulator like any heuristic: at each scheduling pass it
observes (``envs.observation``, the same code the Gymnasium environment uses), asks
``decide`` for an action, applies it, and repeats until the decision is to wait. A
guard keeps the cluster safe from a bad decision: if the decider proposes an action
that is not allowed, or waits while nothing runs and a job fits, the pass falls back
to starting the first job that fits in queue order; each case is counted in
``guard_stats`` (reported by ``bench``).
"""

from __future__ import annotations

import numpy as np
from autoflow.envs.estimator import EstimatedSeat, make_estimator
from autoflow.envs.las_choice import las_action
from autoflow.envs.levels import agent_queue_key, arm_level_wakeup
from autoflow.envs.obs_config import ObsConfig
from autoflow.envs.observation import Decision, Observer

from autoflow.errors import ConfigError
from autoflow.policies.base import Policy


class DeciderPolicy(EstimatedSeat, Policy):
    preemptive = True

    def __init__(self, placer, obs_config: ObsConfig | None = None):
        super().__init__(placer)
        self.observer = Observer(obs_config or ObsConfig())
        self.ssl = make_estimator(self.observer.config.estimator)  # what it was trained on
        self.guard_stats = {"decisions": 0, "invalid": 0, "idle_wait": 0}

    def queue_key(self, js) -> tuple:
        self.joined(js)
        return agent_queue_key(js)

    def decide(self, decision: Decision, ctx) -> int:
        raise NotImplementedError

    def on_start(self, ctx, js) -> None:
        arm_level_wakeup(ctx, js)  # decide again when it reaches the next LAS level

    def schedule(self, ctx) -> None:
        self.refresh(ctx)
        cfg = self.observer.config
        wait = cfg.wait_action
        for _ in range(4 * (len(ctx.waiting) + len(ctx.running)) + 8):  # bounded per pass
            d = self.observer.observe(ctx)
            if not d.can_act:
                return
            a = int(self.decide(d, ctx))
            self.guard_stats["decisions"] += 1
            if a == wait and not ctx.running and d.mask[: cfg.queue_slots].any():
                self.guard_stats["idle_wait"] += 1
                a = self._fallback(d)
            elif not (0 <= a < cfg.n_actions and d.mask[a]):
                self.guard_stats["invalid"] += 1
                a = self._fallback(d)
            if a == wait or not self.observer.apply(ctx, d, a):
                return

    def _fallback(self, d: Decision) -> int:
        starts = np.flatnonzero(d.mask[: self.observer.config.queue_slots])
        return int(starts[0]) if starts.size else self.observer.config.wait_action


class LasExpert(DeciderPolicy):
    """LAS expressed in the agent's actions (``envs.las_choice``): its schedule is
    identical to ``las-fcfs``'s (the agent's actions preempt only jobs of lower queues
    and queue a preempted job at the back, as those rules do). The demonstrator for the
    agent's warm start (``agents.imitation``)."""

    name = "las-expert"

    def decide(self, d: Decision, ctx) -> int:
        return las_action(d, self.observer.config)


def las_expert(arg: str, placer) -> LasExpert:
    """The ``las-expert`` entry of the policy registry (takes no argument)."""
    if arg:
        raise ConfigError(f"policy 'las-expert' takes no argument (got {arg!r})")
    return LasExpert(placer)
