"""Policies, registered by name. A policy is written ``NAME`` or ``NAME+PLACER``
(default placer ``best-fit``); the CLI, the benchmarks and the API use these names."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..placers import DEFAULT_PLACER, PLACERS, make_placer
from .base import Policy
from .easy_backfill import EasyBackfill
from .fifo import Fifo
from .las import Las, parse_thresholds
from .sjf import Sjf
from .sjf_oracle import SjfOracle
from .srtf_oracle import SrtfOracle

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (Fifo, Sjf, SjfOracle, SrtfOracle, Las, EasyBackfill)
}


def _rl(arg: str, placer) -> Policy:
    """``rl`` (the shipped model) or ``rl:PATH``; needs the ``rl`` extra."""
    try:
        from ..agents.rl_policy import RlPolicy
    except ImportError as e:
        raise ConfigError(f"policy rl needs the rl extra (pip install 'autoflow[rl]'): {e}") from e
    return RlPolicy(placer, arg or None)


def _las(arg: str, placer) -> Policy:
    """``las`` (Tiresias' thresholds) or ``las:T1/T2/...`` (queue thresholds in GPU-seconds)."""
    return Las(placer, parse_thresholds(arg)) if arg else Las(placer)


# Policies that take an argument after a colon (e.g. ``rl:PATH``) register a factory here.
POLICY_FACTORIES: dict[str, Callable[[str, object], Policy]] = {"rl": _rl, "las": _las}
# ... and, where the argument can be checked without building the policy, a check
ARGUMENT_CHECKS: dict[str, Callable[[str], object]] = {"las": parse_thresholds}


def parse_policy(spec: str) -> tuple[str, str | None, str]:
    """``NAME[:ARG][+PLACER]`` -> (name, arg, placer)."""
    spec = spec.strip()
    name, _, placer = spec.partition("+")
    placer = placer or DEFAULT_PLACER
    name, _, arg = name.partition(":")
    if name not in POLICIES and name not in POLICY_FACTORIES:
        known = sorted(set(POLICIES) | set(POLICY_FACTORIES))
        raise ConfigError(f"unknown policy {name!r} in {spec!r}; known policies: "
                          f"{', '.join(known)}")
    if arg and name in ARGUMENT_CHECKS:  # a bad argument fails here, before any simulation
        ARGUMENT_CHECKS[name](arg)
    if placer not in PLACERS:
        raise ConfigError(f"unknown placer {placer!r} in {spec!r}; known placers: "
                          f"{', '.join(PLACERS)}")
    return name, (arg or None), placer


def make_policy(spec: str) -> Policy:
    name, arg, placer = parse_policy(spec)
    if name in POLICY_FACTORIES:
        return POLICY_FACTORIES[name](arg or "", make_placer(placer))
    if arg:
        raise ConfigError(f"policy {name!r} takes no argument (got {arg!r})")
    return POLICIES[name](make_placer(placer))


__all__ = ["POLICIES", "POLICY_FACTORIES", "Policy", "make_policy", "parse_policy"]
