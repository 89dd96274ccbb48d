"""Placers, registered by name: first-fit, best-fit, fgd, spread."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Placer
from .best_fit import BestFit
from .fgd import FragmentationGradient
from .first_fit import FirstFit
from .spread import Spread

PLACERS: dict[str, type[Placer]] = {
    cls.name: cls for cls in (FirstFit, BestFit, FragmentationGradient, Spread)
}
DEFAULT_PLACER = "best-fit"


def make_placer(name: str) -> Placer:
    try:
        return PLACERS[name]()
    except KeyError:
        raise ConfigError(f"unknown placer {name!r}; known placers: {', '.join(PLACERS)}") \
            from None


__all__ = ["DEFAULT_PLACER", "PLACERS", "Placer", "make_placer"]
