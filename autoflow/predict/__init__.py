"""Duration prediction (issue 19): the distribution of a job's remaining run time.

``features`` builds decision-time examples (nothing of a job still running is used),
``models`` fits, saves and loads the quantile MLP and the ``gbm`` and ``history``
baselines, ``metrics`` scores them, ``cli`` is ``autoflow predictor fit | eval``.
"""

from .features import FEATURES, Examples, examples, job_features
from .metrics import evaluate, mae_log, pinball, spearman
from .models import QUANTILES, Predictor, fit_gbm, fit_mlp, history_predict, load

__all__ = ["FEATURES", "QUANTILES", "Examples", "Predictor", "evaluate", "examples",
           "fit_gbm", "fit_mlp", "history_predict", "job_features", "load", "mae_log",
           "pinball", "spearman"]
