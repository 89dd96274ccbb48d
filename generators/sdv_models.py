"""SDV synthesizers for job attributes: ``copula`` (GaussianCopulaSynthesizer, the
default), ``ctgan`` (CTGANSynthesizer) and ``tvae`` (TVAESynthesizer).

SDV (and CTGAN, copulas, RDT) are under the Business Source License 1.1: installed with
the ``synth`` extra, never required (``empirical`` is the permissive fallback). The
SDV 2.0 API is used: metadata from ``Metadata.detect_from_dataframes``, ``fit`` and
``sample`` on ``{"jobs": frame}`` dictionaries.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pandas as pd

from autoflow.errors import ConfigError

from .table import CATEGORICAL, NUMERICAL
from .transforms import NormalScores

TABLE = "jobs"
KINDS = {"copula": "GaussianCopulaSynthesizer", "ctgan": "CTGANSynthesizer",
         "tvae": "TVAESynthesizer"}


def sdv_available() -> bool:
    try:
        import sdv  # noqa: F401
    except ImportError:
        return False
    return True


def metadata_for(df: pd.DataFrame):
    from sdv.metadata import Metadata

    md = Metadata.detect_from_dataframes({TABLE: df})
    for col in df.columns:
        sdtype = "categorical" if col in CATEGORICAL else "numerical"
        md.update_column(col, table_name=TABLE, sdtype=sdtype)
    return md


class SdvModel:
    def __init__(self, name: str, epochs: int | None = None):
        if name not in KINDS:
            raise ConfigError(f"unknown SDV model {name!r}; known: {', '.join(KINDS)}")
        if not sdv_available():
            raise ConfigError(f"model {name!r} needs SDV: pip install 'autoflow[synth]' "
                              "(Business Source License 1.1), or use --model empirical")
        self.name, self.epochs = name, epochs

    def fit(self, df: pd.DataFrame, seed: int = 0) -> None:
        import sdv.single_table as st
        import torch

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        # heavy-tailed columns go in as normal scores of their empirical distribution and
        # come back through its quantiles (raw CTGAN lost the duration tail)
        rng = np.random.default_rng(seed)
        self.scores = {c: NormalScores().fit(df[c].to_numpy(dtype=float)) for c in NUMERICAL}
        data = df.copy()
        for c, ns in self.scores.items():
            data[c] = ns.forward(df[c].to_numpy(dtype=float), rng)
        md = metadata_for(data)
        kwargs: dict = {}
        if self.name == "copula":
            kwargs["numerical_distributions"] = {c: "norm" for c in NUMERICAL}  # scores now
            kwargs["default_distribution"] = "uniform"  # categories are uniform-encoded
        else:
            kwargs["enable_gpu"] = torch.cuda.is_available()
            if self.epochs:
                kwargs["epochs"] = int(self.epochs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*save_to_json.*")
            self.synth = getattr(st, KINDS[self.name])(md, **kwargs)
        self.synth.fit({TABLE: data})

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        import torch

        torch.manual_seed(seed)
        self.synth.reset_sampling()
        self.synth._set_random_state(seed)  # SDV's only hook for a seeded sample
        out = self.synth.sample(n)[TABLE]
        for c, ns in self.scores.items():
            out[c] = ns.inverse(out[c].to_numpy(dtype=float))
        return out
