"""CycleState: what the scheduler derives from the cluster state to decide quickly, and
the scratch of one scheduling pass, with one owner and one invalidation rule.

After kube-scheduler's ``CycleState``. The :class:`~autoflow.core.context.SchedContext`
owns one; policies and the learned agent's observation reach it as ``ctx.cycle``.

The rule: every answer derived from capacity is tagged with the cluster state's change
counters (``ClusterState.version``, ``shrunk``, ``grown``, ``node_shrunk``,
``node_grown``) and trusted only while no change since could have altered it —

* shape checks (``gate``): while the state is at the version they were made at;
* "fits" (``fits``, ``fitted``): while no capacity was taken away (from the node it fits
  on, for a one-node job);
* "does not fit" (``fits``, ``failed``, shapes ``shut``), across passes: while no
  capacity came back (for ``fits`` on a small cluster, a one-node job: while no node
  that gained capacity can take it);
* "no waiting job fits" (``settled``, written by ``policies.base.greedy_pass``): for the
  jobs waiting then, while no node that gained capacity since can take them.

Per-pass scratch (``suspect``, and whatever a policy keeps with ``write``) is dropped
when the next pass begins; per-instant scratch (``instant``: what the agent's
observation keeps across the decisions of one instant) when the clock moves. Nothing
else is invalidated by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ..feasibility import Shape, ShapeGate
from ..job import WHOLE_GPU
from ..state import ClusterState, Req

FAILED_PER_KIND = 32  # "does not fit" requirements kept per kind
FITTED_PER_KIND = 16  # "fits" witnesses kept per kind


class CycleState:
    def __init__(self, state: ClusterState):
        self.state = state
        self.gate = ShapeGate(state)  # shape checks against the live state
        # requirements that found no placement, by (types, fractional), and the
        # ``state.grown`` they were found at: a requirement needing at least as much of
        # everything does not fit either, until capacity grows
        self._failed: dict[tuple, list[Req]] = {}
        self._failed_grown = -1
        # per shape, True when no job of it fits (until capacity grows, as ``_failed``),
        # else how many of its kind's failures it was checked against (``shape_shut``)
        self._shut: dict[Shape, bool | int] = {}
        # fits(): each answer with the version it was found at and the node it fits on
        self.fits: dict[Req, tuple[bool, int, int]] = {}
        self.fitted: dict[tuple, list[tuple[Req, int, int]]] = {}  # "yes" witnesses, by kind
        self.suspect: set[Shape] = set()  # shapes with a job that failed in this pass
        # (state.version, SchedContext.enqueued) at the end of a pass after which no
        # waiting job fitted (``policies.base.greedy_pass``)
        self.settled: tuple[int, int] | None = None
        self._scratch: dict[Hashable, Any] = {}
        self._instant: float | None = None
        self._instant_scratch: dict[Hashable, Any] = {}

    def begin(self, now: float) -> None:
        """A scheduling pass begins at ``now``."""
        self.suspect.clear()
        self._scratch.clear()
        # (``_failed`` is kept across passes: a requirement that found no placement
        # still finds none until capacity comes back, whatever pass asks; on Alibaba
        # openb half the passes follow an arrival, with nothing released since the last)
        if now != self._instant:
            self._instant = now
            self._instant_scratch.clear()

    # -- "does not fit" ---------------------------------------------------------------
    def _failures(self) -> dict[tuple, list[Req]]:
        if self._failed_grown != self.state.grown:
            self._failed.clear()
            self._shut.clear()
            self._failed_grown = self.state.grown
        return self._failed

    def known_to_fail(self, req: Req) -> bool:
        for f in self._failures().get((req.types_key, req.fractional), ()):
            if (req.num_gpus >= f.num_gpus and req.milli >= f.milli and req.cpu >= f.cpu
                    and req.mem >= f.mem):
                return True
        return False

    def shape_shut(self, shape: Shape) -> bool:
        """No job of ``shape`` fits now, as far as is known without scanning: it was
        found so since capacity last came back (``shut``), or the least such a job needs
        is at least as much as a requirement that found no placement (``known_to_fail``
        of every job of the shape, checked once per shape and failure). This closes
        whole shapes in a pass (``SchedContext.shape_open``) instead of visiting their
        jobs one by one: on openb two thirds of the jobs a pass tried failed on a
        requirement of another shape, and most shapes were checked again at every pass."""
        failures = self._failures()
        got = self._shut.get(shape, 0)
        if got is True:
            return True
        types_key, num, milli, cpu, mem = shape
        fails = failures.get((types_key, num == 1 and 0 < milli < WHOLE_GPU))
        if not fails or len(fails) == got:
            return False
        for f in fails[got:]:
            if num >= f.num_gpus and milli >= f.milli and cpu >= f.cpu and mem >= f.mem:
                self._shut[shape] = True
                return True
        self._shut[shape] = len(fails)
        return False

    def shut(self, shape: Shape) -> None:
        """No job of ``shape`` fits now (so none does until capacity comes back)."""
        self._failures()
        self._shut[shape] = True

    def failed(self, req: Req, shape: Shape) -> None:
        """``req`` (of a job of ``shape``) found no placement now."""
        fails = self._failures().setdefault((req.types_key, req.fractional), [])
        if len(fails) < FAILED_PER_KIND:
            fails.append(req)
        self.suspect.add(shape)

    # -- scratch ------------------------------------------------------------------------
    def read(self, key: Hashable, default=None):
        """What was written under ``key`` in this pass."""
        return self._scratch.get(key, default)

    def write(self, key: Hashable, value) -> None:
        self._scratch[key] = value

    def instant(self, key: Hashable, make: Callable[[], Any], now: float):
        """Scratch kept across the passes and decisions of the instant ``now``: the value
        under ``key``, made with ``make()`` the first time at this instant."""
        if now != self._instant:
            self._instant = now
            self._instant_scratch.clear()
        got = self._instant_scratch.get(key)
        if got is None:
            got = self._instant_scratch[key] = make()
        return got
