"""sjf: shortest job first by *predicted* duration, non-preemptive.

Starts, shortest predicted first, every waiting job that fits. ``sjf`` predicts by the
history estimator (``JobState.predicted``); ``sjf:ssl`` by the duration predictor's
median remaining time (``policies.ssl``: the shipped predictor, or ``sjf:ssl=PATH``),
the jobs that joined the queue since the last pass predicted in one batch at its start.
"""

from __future__ import annotations

from .base import Policy, greedy_pass
from .ssl import label, make_ssl


class Sjf(Policy):
    name = "sjf"

    def __init__(self, placer, predictor: str | None = None):
        super().__init__(placer)
        self.ssl = make_ssl(predictor, self.name)

    def queue_key(self, js) -> tuple:
        if self.ssl is not None:
            self.ssl.joined(js)
        return (js.predicted, js.submit)

    def prepare(self, ctx) -> None:
        if self.ssl is not None:
            self.ssl.reset()

    def on_finish(self, ctx, js) -> None:
        if self.ssl is not None:
            self.ssl.completed(js)

    def schedule(self, ctx) -> None:
        if self.ssl is not None:
            self.ssl.refresh(ctx, rekey=True)
        greedy_pass(ctx)

    @property
    def label(self) -> str:
        return f"{label(self.name, self.ssl)}+{self.placer.name}"
