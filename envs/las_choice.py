"""LAS's decision written in the agent's actions.

LAS under autoflow's earlier rules (``las-fcfs``, ``autoflow.policies.las_fcfs``) runs
one pass over the queue at each event; ``las_action`` gives the same pass one action at a
time, from what a
:class:`~autoflow.envs.observation.Decision` shows: in queue order, start the first job
that fits; for a job that does not fit but would once the running jobs of higher LAS
levels were preempted, preempt LAS's next victim (highest level, the latest to reach
it); else wait. Replayed action by action it reproduces ``las-fcfs``'s schedule exactly
(every start and preemption; ``tests/test_las_choice.py``).

It is both the agent's teacher (``agents.imitation``) and a feature of the observation
(the ``las_choice`` / ``las_victim`` / ``las_waits`` columns): the agent learns when to
depart from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autoflow.policies.las import level_of

if TYPE_CHECKING:
    from .obs_config import ObsConfig
    from .observation import Decision


def las_action(d: Decision, cfg: ObsConfig) -> int:
    q = cfg.queue_slots
    for i, js in enumerate(d.queue):
        if js is None:
            break
        if d.mask[i]:
            return i
        if not d.reachable[i]:
            continue
        k = level_of(js.attained)
        # the running window is in LAS's victim order: the first allowed one of a higher
        # level is LAS's next victim
        for j, key in enumerate(d.victim_keys):
            if d.mask[q + j] and key[0] > k:
                return q + j
    return cfg.wait_action
