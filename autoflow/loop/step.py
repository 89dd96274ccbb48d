"""One window of the self-optimizing loop: drift → retraining → champion vs challenger.

Shared by the offline loop (``autoflow loop``, ``loop.offline``) and the one inside the
service (``autoflow serve --self-optimize``, ``loop.online``): given the window's
outcomes, ``judge_window`` tests drift against the reference window and the performance
signal (the window replayed under the champion and every heuristic), and on either it
trains a challenger from the champion, registers it and its generator with their lineage,
plays the paired comparison and promotes or rejects it in the registry, with the
evidence. Swapping the live policy is the caller's: the offline loop swaps its simulated
run, the service's champion watcher (``loop.watch``) follows the registry.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import manifest as manifest_mod
from ..cluster import ClusterSpec
from ..evaluate import evaluate
from ..job import Job
from ..workflow import within
from ..workload import Workload
from .compare import cases, compare, policy_of
from .drift import detect, performance_signal

MIN_POOL = 10  # completed jobs of a GPU count before its own durations are used
PRIOR_S = 3600.0  # the duration imputed before any job has completed


class Imputer:
    """What an unfinished job's duration is taken to be, from the durations of the jobs
    completed so far: the median of those longer than the work it has done (of its GPU
    count, once ``MIN_POOL`` of them have completed; else of all), and twice its work
    done if none ran longer. A job that has not run gets the plain median.

    The median of the longer ones, not the plain median: a job still running after
    hours, in a heavy-tailed workload, is likely to run much longer (its residual life
    grows with its age); imputing it at the median (tried first) made every window's
    replay see the long jobs a window began with as short, and preferred the rules that
    run them to the end (sjf) where the live run needed the ones that preempt them."""

    def __init__(self, durations: list[tuple[int, float]]):
        by: dict[int, list[float]] = {}
        for g, d in durations:
            by.setdefault(int(g), []).append(float(d))
        self.by_gpus = {g: sorted(v) for g, v in by.items() if len(v) >= MIN_POOL}
        self.all = sorted(d for v in by.values() for d in v)

    def duration(self, num_gpus: int, done: float) -> float:
        pool = self.by_gpus.get(num_gpus, self.all)
        longer = pool[bisect_right(pool, done):]
        if longer:
            return max(float(np.median(longer)), done, 1.0)
        if pool:
            return max(2.0 * done, 1.0)
        return max(PRIOR_S, 2.0 * done)


@dataclass
class Window:
    """What the run has shown of one window by its end."""

    index: int
    span: tuple[float, float]  # [start, end) of submit time
    known: list[Job]  # submitted in the window and completed: true durations
    censored: list[Job]  # submitted in the window, not completed: what is known of them
    backlog: list[Job]  # waiting or running at the window's start, with the work they had left

    def workload(self) -> Workload:
        """The window's replay: its backlog, submitted at its start, then its jobs (their
        dependencies on jobs that ended before the window left out)."""
        return Workload(within([replace(j, censored=False)
                                for j in self.backlog + self.known + self.censored]),
                        source=f"window {self.index}")


def judge_window(registry, win: Window, ref_jobs: list[Job], ref_span: tuple[float, float],
                 spec: ClusterSpec, cluster: str, cfg, folder: Path, command: str,
                 trainer=None, console=None) -> tuple[dict, dict | None, str | None]:
    """Drift and the performance signal on ``win``; on either, challengers made,
    compared and promoted or rejected in ``registry``. ``cluster`` names the cluster for
    the challenger's episodes (a built-in name or a YAML file); ``cfg`` is a
    ``LoopConfig`` (its heuristics, seed, drift, challenger and compare settings).

    The challengers: one trained from the champion on the window and its variants, and,
    when a heuristic beats the champion on the window's replay, the champion pinned to
    that heuristic. Each is compared with the champion on the same paired cases; of
    those whose interval is below the champion's, the best (lowest mean log ratio) is
    promoted, and every other one is rejected with its evidence.

    Returns (the window's report fields, the retraining events (one per challenger), the
    sha256 of the promoted challenger or None)."""
    a, b = win.span
    rep = detect(ref_jobs, win.known, ref_span=ref_span, cur_span=(a, b),
                 capacity_gpus=spec.total_gpus, cfg=cfg.drift)
    w = win.workload().shifted()
    whatif = {h: evaluate(h, w, spec, seed=cfg.seed).metrics["avg_jct"]
              for h in cfg.heuristics}
    champ = evaluate(policy_of(registry.path_of("champion"), "champion"), w, spec,
                     seed=cfg.seed).metrics["avg_jct"]
    perf = performance_signal(champ, whatif, cfg.drift)
    row = {"drift_detected": rep.drift_detected, "drift": rep.to_dict(), "retrained": False,
           "promoted": False, "performance": {**perf, "champion": champ, "heuristics": whatif}}
    say = console.print if console is not None else (lambda *_: None)
    say(f"window {win.index}: {len(win.known)} outcomes, drift "
        f"{'yes (' + ', '.join(rep.drifted) + ')' if rep.drift_detected else 'no'}"
        f", champion x{perf['ratio']:.3f} of {perf['best']}")
    if not (rep.drift_detected or perf["losing"]):
        return row, [], None
    from .challenger import train_challenger

    row["retrained"] = True
    champion_sha = registry.alias("champion")["sha256"]
    card, summary = (trainer or train_challenger)(
        registry.path_of("champion"), win.workload(), cluster, folder,
        seed=cfg.seed + win.index, cfg=cfg.challenger)
    lineage = {"window": [a, b], "window_index": win.index, "outcomes": len(win.known),
               "parent": champion_sha, "command": command,
               "git_commit": manifest_mod.git_commit(),
               "trigger": "drift" if rep.drift_detected else "losing"}
    if (folder / "generator.npz").is_file():
        registry.register(folder / "generator.npz", kind="generator",
                          name=f"generator of window {win.index}", lineage=lineage)
    offered = [registry.register(card, kind="adaptive",
                                 name=f"challenger of window {win.index}", lineage=lineage,
                                 metrics={"teacher": summary["fit"]})]
    pinned = _pinned_challenger(registry, perf, folder, win.index, lineage)
    if pinned is not None:
        offered.append(pinned)
    events, passed = [], []
    case_list = None
    for chal in dict.fromkeys(offered):  # in order, once each
        if chal == champion_sha:  # it learned nothing new
            say("  the challenger is the champion (same content)")
            events.append({"window": win.index, "challenger": chal, "champion": champion_sha,
                           "promoted": False, "ratio": 1.0, "ci": [0.0, 0.0],
                           "reason": "the challenger is the champion (same content)",
                           "evidence": None})
            continue
        registry.set_alias("challenger", chal, reason=f"offered on window {win.index}")
        if case_list is None:
            case_list = cases(win.workload(), spec, summary["sources"], cfg.compare)
        ev = compare(registry.path_of("champion"), registry.path_of(chal), case_list,
                     cfg.heuristics, cfg.compare)
        events.append({"window": win.index, "challenger": chal, "champion": champion_sha,
                       "name": registry.get(chal)["name"], "promoted": False,
                       "reason": ev["reason"], "ratio": ev["ratio"], "ci": ev["ci"],
                       "evidence": ev})
        if ev["promote"]:
            passed.append(events[-1])
    best = min(passed, key=lambda e: e["evidence"]["mean_log_ratio"], default=None)
    for e in events:
        if e["evidence"] is None:
            continue
        if e is best:
            registry.promote(e["challenger"], reason=e["reason"], evidence=brief(e["evidence"]))
            e["promoted"] = row["promoted"] = True
        else:
            if e["evidence"]["promote"]:  # better than the champion, not the best offered
                e["reason"] = (f"not promoted: better than the champion (x{e['ratio']:.3f}) "
                               f"but {best['name']} was better (x{best['ratio']:.3f})")
            registry.reject(e["challenger"], reason=e["reason"], evidence=brief(e["evidence"]))
        say(f"  {e.get('name', 'challenger')}: {e['reason']}")
    return row, events, best["challenger"] if best else None


def _pinned_challenger(registry, perf: dict, folder: Path, index: int,
                       lineage: dict) -> str | None:
    """When a heuristic beats the champion on the window's replay (the performance
    signal), the champion pinned to that heuristic (``agents.adaptive.pin``), registered
    as a challenger; None otherwise, or when the champion cannot run it."""
    from ..agents.adaptive import load, pin

    if not perf["losing"]:
        return None
    _, cands, card = load(registry.path_of("champion"))
    if perf["best"] not in cands or card.get("pinned") == perf["best"]:
        return None
    made = pin(registry.path_of("champion"), perf["best"], folder / f"pinned-{perf['best']}")
    return registry.register(made, kind="adaptive",
                             name=f"{perf['best']} pinned (window {index})",
                             lineage={**lineage, "pinned": perf["best"]})


def brief(ev: dict) -> dict:
    """The comparison's evidence as the registry keeps it."""
    return {k: ev[k] for k in ("ratio", "ci", "mean_log_ratio", "confidence", "cases")}
