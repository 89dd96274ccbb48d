"""Which duration estimate the agent's observation reads.

Every job row of the observation carries a predicted duration and time left
(``envs.rows``: ``predicted_log``, ``predicted_left_log``, ``progress_of_predicted``) and
the queue window picks the shortest fitting jobs by it (``envs.window``). Both read
``JobState.predicted``. With ``estimator="history"`` that is the core's history estimate
(the mean of completed jobs of the same user and GPU count); with ``"ssl"`` (the duration
predictor shipped with autoflow, ``autoflow/models/predictor-v1``) or ``"ssl=PATH"`` (a
folder from ``autoflow predictor fit``) it is the predictor's: work done plus the median
remaining time, predicted when a job joins the queue from what is known then
(``policies.ssl``, the same code ``sjf:ssl`` runs). A model records the estimator it was
trained with and is served with the same one (``ObsConfig.estimator``).
"""

from __future__ import annotations

from autoflow.errors import ConfigError
from autoflow.policies.ssl import SslPredictions, make_ssl

HISTORY = "history"


def _spec(spec: str) -> str:
    spec = (spec or HISTORY).strip()
    if spec != HISTORY and spec != "ssl" and not spec.startswith("ssl="):
        raise ConfigError(f"estimator must be history, ssl or ssl=PATH (a predictor folder), "
                          f"got {spec!r}")
    return spec


def make_estimator(spec: str) -> SslPredictions | None:
    """The predictions an agent's seat keeps (None: the history estimate as it is); a
    bad spec or predictor folder is a ``ConfigError``."""
    spec = _spec(spec)
    return None if spec == HISTORY else make_ssl(spec, "estimator")


def check_estimator(spec: str) -> str:
    """``history``, ``ssl`` or ``ssl=PATH`` (the predictor loads); else a ``ConfigError``."""
    make_estimator(spec)
    return _spec(spec)


class EstimatedSeat:
    """Hooks for a policy whose decisions read the agent's observation: with an ``ssl``
    estimator, jobs are predicted in one batch at the start of each scheduling pass
    (``refresh``) and ``JobState.predicted`` holds the prediction. The queue order (LAS's
    levels) does not depend on it, so nothing is re-sorted."""

    ssl: SslPredictions | None = None

    def joined(self, js) -> None:
        if self.ssl is not None:
            self.ssl.joined(js)

    def prepare(self, ctx) -> None:
        super().prepare(ctx)
        if self.ssl is not None:
            self.ssl.reset()

    def on_finish(self, ctx, js) -> None:
        super().on_finish(ctx, js)
        if self.ssl is not None:
            self.ssl.completed(js)

    def refresh(self, ctx) -> None:
        if self.ssl is not None:
            self.ssl.refresh(ctx, rekey=False)
