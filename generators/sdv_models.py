"""SDV synthesizers for job attributes: ``copula`` (GaussianCopulaSynthesizer, the
default), ``ctgan`` (CTGANSynthesizer) and ``tvae`` (TVAESynthesizer).

SDV (and CTGAN, copulas, RDT) are under the Business Source License 1.1: installed with
the ``synth`` extra, never required (``empirical`` is the permissive fallback). The
SDV 2.0 API is used: metadata from ``Metadata.detect_from_dataframes``, ``fit`` and
``sample`` on ``{"jobs": frame}`` dictionaries.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from autoflow.errors import ConfigError

from .table import CATEGORICAL, NUMERICAL

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
        md = metadata_for(df)
        kwargs: dict = {}
        if self.name == "copula":
            # heavy tails are already on a log scale; a Gaussian KDE-free fit of each
            # marginal keeps fitting to about a second
            kwargs["default_distribution"] = "truncnorm"
            kwargs["numerical_distributions"] = {c: "gaussian_kde" if c == "log_duration"
                                                 else "truncnorm" for c in NUMERICAL}
        else:
            kwargs["enable_gpu"] = torch.cuda.is_available()
            if self.epochs:
                kwargs["epochs"] = int(self.epochs)
        self.synth = getattr(st, KINDS[self.name])(md, **kwargs)
        self.synth.fit({TABLE: df})

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        import torch

        torch.manual_seed(seed)
        self.synth.reset_sampling()
        self.synth._set_random_state(seed)  # SDV's only hook for a seeded sample
        return self.synth.sample(n)[TABLE]
