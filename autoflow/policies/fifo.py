"""fifo: first come, first served, strictly — the head of the queue blocks the rest."""

from __future__ import annotations

from .base import Policy, greedy_pass


class Fifo(Policy):
    name = "fifo"

    def schedule(self, ctx) -> None:
        greedy_pass(ctx, blocking=True)
