"""The attribute models by name. ``copula`` (the default) falls back to ``empirical``,
with a warning, when SDV is not installed."""

from __future__ import annotations

import warnings

from autoflow.errors import ConfigError

from .empirical import EmpiricalCopula
from .sdv_models import KINDS, SdvModel, sdv_available

MODELS = ("copula", "ctgan", "tvae", "empirical")
DEFAULT_MODEL = "copula"


def make_model(name: str, epochs: int | None = None):
    if name not in MODELS:
        raise ConfigError(f"unknown generator model {name!r}; known: {', '.join(MODELS)}")
    if name == "empirical":
        return EmpiricalCopula()
    if name == DEFAULT_MODEL and not sdv_available():
        warnings.warn("SDV is not installed: using the empirical copula instead of SDV's "
                      "GaussianCopulaSynthesizer (pip install 'autoflow[synth]')", stacklevel=2)
        return EmpiricalCopula()
    if name not in KINDS:
        raise ConfigError(f"generator model {name!r} has no SDV synthesizer")
    return SdvModel(name, epochs=epochs)
