"""Policies, registered by name. A policy is written ``NAME`` or ``NAME+PLACER``
(default placer ``best-fit``); the CLI, the benchmarks and the API use these names.

Heuristics register here directly. Learned policies, which need the ``rl`` extra
(torch, stable-baselines3), register *lazily*: by the module and factory that build
them, imported only when such a policy is made, so that the core and every heuristic
work on the base install. Other packages can add policies the same way through the
``autoflow.policies`` entry-point group (``NAME = "module:factory"``; the factory is
called as ``factory(arg, placer)``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from ..errors import ConfigError
from ..placers import DEFAULT_PLACER, PLACERS, make_placer
from .base import Policy
from .critical_path import CriticalPathFirst
from .easy_backfill import EasyBackfill
from .fifo import Fifo
from .gittins import Gittins
from .gittins_siblings import GittinsSiblings
from .gittins_ssl import GittinsSsl
from .las import Las, parse_thresholds
from .las_fcfs import LasFcfs
from .shortest_remaining_workflow import ShortestRemainingWorkflow
from .sjf import Sjf
from .sjf_oracle import SjfOracle
from .srtf_oracle import SrtfOracle
from .ssl import check_ssl
from .stages_first import StagesFirst

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (Fifo, Sjf, SjfOracle, SrtfOracle, Las, EasyBackfill, Gittins,
                             GittinsSiblings, CriticalPathFirst, ShortestRemainingWorkflow)
}


@dataclass(frozen=True)
class LazyPolicy:
    """A policy built by ``module:factory(arg, placer)``, imported on first use."""

    target: str  # "module:factory"
    doc: str  # one line for `autoflow policies`
    extra: str = ""  # the optional dependency set it needs, named in the error

    def build(self, name: str, arg: str, placer) -> Policy:
        module, _, attr = self.target.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            need = f" (pip install 'autoflow[{self.extra}]')" if self.extra else ""
            raise ConfigError(f"policy {name} needs the {self.extra or 'missing'} extra"
                              f"{need}: {e}") from e
        return factory(arg, placer)


LAZY_POLICIES: dict[str, LazyPolicy] = {
    "rl": LazyPolicy("autoflow.agents.rl_policy:from_spec",
                     "rl (the model shipped with autoflow: the adaptive scheduler, which "
                     "puts the heuristic that suits the workload in charge), rl:workflows (the "
                     "one trained on pipelines of dependent jobs) or rl:PATH (a model written "
                     "by autoflow train): the learned scheduler", "rl"),
    "las-expert": LazyPolicy("autoflow.agents.decider:las_expert",
                             "LAS expressed in the learned scheduler's actions (its teacher; "
                             "the same schedule as las-fcfs)", "rl"),
}


def _plugins() -> dict[str, LazyPolicy]:
    """Policies other packages register under the ``autoflow.policies`` entry points."""
    found = {}
    for ep in entry_points(group="autoflow.policies"):
        if ep.name not in POLICIES and ep.name not in LAZY_POLICIES:
            found[ep.name] = LazyPolicy(ep.value, f"from {ep.value} (plugin)")
    return found


def _las(arg: str, placer) -> Policy:
    """``las`` (Tiresias' thresholds) or ``las:T1/T2/...`` (queue thresholds in GPU-seconds)."""
    return Las(placer, parse_thresholds(arg)) if arg else Las(placer)


def _las_fcfs(arg: str, placer) -> Policy:
    """``las-fcfs`` or ``las-fcfs:T1/T2/...``: LAS under autoflow's earlier rules."""
    return LasFcfs(placer, parse_thresholds(arg, "las-fcfs")) if arg else LasFcfs(placer)


def _stages_first(arg: str, placer) -> Policy:
    """``stages-first`` or ``stages-first:T1/T2/...``: las-fcfs, workflow stages kept in the
    first queue."""
    return (StagesFirst(placer, parse_thresholds(arg, "stages-first")) if arg
            else StagesFirst(placer))


def _sjf(arg: str, placer) -> Policy:
    """sjf:ssl (the duration predictor shipped with autoflow) or sjf:ssl=PATH (a folder
    from autoflow predictor fit): sjf by the predicted median remaining time."""
    return Sjf(placer, arg or None)


def _gittins(arg: str, placer) -> Policy:
    """gittins:ssl or gittins:ssl=PATH: gittins, each job also ranked by the duration
    predictor's distribution of its remaining run time."""
    return GittinsSsl(placer, arg) if arg else Gittins(placer)


def _easy_backfill(arg: str, placer) -> Policy:
    """easy-backfill:ssl or easy-backfill:ssl=PATH: EASY backfilling on the duration
    predictor's median remaining time."""
    return EasyBackfill(placer, arg or None)


# Heuristics that take an argument after a colon register a factory here ...
POLICY_FACTORIES: dict[str, Callable[[str, object], Policy]] = {
    "las": _las, "las-fcfs": _las_fcfs, "sjf": _sjf, "easy-backfill": _easy_backfill,
    "gittins": _gittins, "stages-first": _stages_first}
# ... and, where the argument can be checked without building the policy, a check
ARGUMENT_CHECKS: dict[str, Callable[[str], object]] = {
    "las": parse_thresholds,
    "las-fcfs": lambda arg: parse_thresholds(arg, "las-fcfs"),
    "stages-first": lambda arg: parse_thresholds(arg, "stages-first"),
    "sjf": lambda arg: check_ssl(arg, "sjf"),
    "easy-backfill": lambda arg: check_ssl(arg, "easy-backfill"),
    "gittins": lambda arg: check_ssl(arg, "gittins"),
}


def known_policies() -> list[str]:
    return sorted(set(POLICIES) | set(POLICY_FACTORIES) | set(LAZY_POLICIES) | set(_plugins()))


def parse_policy(spec: str) -> tuple[str, str | None, str]:
    """``NAME[:ARG][+PLACER]`` -> (name, arg, placer)."""
    spec = spec.strip()
    name, _, placer = spec.partition("+")
    placer = placer or DEFAULT_PLACER
    name, _, arg = name.partition(":")
    if (name not in POLICIES and name not in POLICY_FACTORIES and name not in LAZY_POLICIES
            and name not in _plugins()):
        raise ConfigError(f"unknown policy {name!r} in {spec!r}; known policies: "
                          f"{', '.join(known_policies())}")
    if arg and name in ARGUMENT_CHECKS:  # a bad argument fails here, before any simulation
        ARGUMENT_CHECKS[name](arg)
    if placer not in PLACERS:
        raise ConfigError(f"unknown placer {placer!r} in {spec!r}; known placers: "
                          f"{', '.join(PLACERS)}")
    return name, (arg or None), placer


def make_policy(spec: str) -> Policy:
    name, arg, placer = parse_policy(spec)
    lazy = LAZY_POLICIES.get(name) or (None if name in POLICIES or name in POLICY_FACTORIES
                                       else _plugins().get(name))
    if lazy is not None:
        return lazy.build(name, arg or "", make_placer(placer))
    if name in POLICY_FACTORIES:
        return POLICY_FACTORIES[name](arg or "", make_placer(placer))
    if arg:
        raise ConfigError(f"policy {name!r} takes no argument (got {arg!r})")
    return POLICIES[name](make_placer(placer))


__all__ = ["LAZY_POLICIES", "POLICIES", "POLICY_FACTORIES", "Policy", "known_policies",
           "make_policy", "parse_policy"]
