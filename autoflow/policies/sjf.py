"""sjf: shortest job first by *predicted* duration (history estimator), non-preemptive.

Starts, shortest predicted first, every waiting job that fits.
"""

from __future__ import annotations

from .base import Policy


class Sjf(Policy):
    name = "sjf"

    def queue_key(self, js) -> tuple:
        return (js.predicted, js.submit)
