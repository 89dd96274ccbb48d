"""sjf-oracle: shortest job first by the *true* duration (an oracle: not deployable)."""

from __future__ import annotations

from .base import Policy


class SjfOracle(Policy):
    name = "sjf-oracle"
    oracle = True

    def queue_key(self, js) -> tuple:
        return (js.duration, js.submit)
