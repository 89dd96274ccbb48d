"""The size and options of the agent's observation and action space.

One frozen :class:`ObsConfig` fixes how many queue and running slots the agent sees, how
the queue window is filled (``envs.window``), whether it may preempt, and whether LAS's
choice is marked (``envs.las_choice``), and which duration estimate it reads
(``envs.estimator``). Actions: ``0..Q-1`` start queue slot *i*;
``Q..Q+R-1`` preempt running slot *j*; ``Q+R`` wait for the next event.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObsConfig:
    queue_slots: int = 16  # window of the waiting queue
    head_slots: int = 4  # of which reserved for the head of the queue, fit or not
    running_slots: int = 8  # running jobs shown (preemption candidates)
    preemption: bool = True  # may the agent preempt running training jobs?
    scan_limit: int = 64  # fitting jobs examined to fill the window
    reach_slots: int = 2  # blocked jobs that preempting would let start, first in queue order
    reach_scan_limit: int = 4096  # waiting jobs examined to find them (LAS's pass goes as far)
    las_hint: bool = True  # mark LAS's choice in the observation (``envs.las_choice``)
    estimator: str = "history"  # the predicted durations shown: history, ssl or ssl=PATH
    # (``envs.estimator``)

    @property
    def n_actions(self) -> int:
        return self.queue_slots + self.running_slots + 1

    @property
    def wait_action(self) -> int:
        return self.queue_slots + self.running_slots
