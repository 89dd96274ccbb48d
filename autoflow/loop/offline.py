"""``autoflow loop``: the self-optimizing loop, offline, on a replayed workload.

The sources are stitched one after the other (``stitch``: each starts where the previous
one's arrivals end) and replayed through the scheduler core on the simulated backend,
under the live policy: the champion of the model registry (an adaptive scheduler,
``agents.adaptive``). The run is cut into windows (``--window``: a number of jobs, or a
span such as ``12h``, ``3d``). At the end of each window the loop does what a running
``autoflow serve --self-optimize`` would do with the outcomes it has seen:

1. **Drift** (``loop.drift``): the window's outcomes against the reference window (the
   one the champion was last chosen on; at first, the first window): durations of the
   jobs that completed, GPU-size mix, arrivals, load. And the performance signal: the
   window replayed (what-if) under the champion and every heuristic; the champion is
   losing if a heuristic beats it by more than the margin.
2. On drift or a losing champion, **retraining**: a generator refitted on the window, a
   challenger trained from the champion on the window and its variants
   (``loop.challenger``), both registered with their lineage.
3. **Champion vs challenger** (``loop.compare``): paired replays; promoted only if the
   paired bootstrap interval excludes zero in the challenger's favour; otherwise the
   rejection and its evidence are recorded.
4. **Hot swap**: a promoted challenger takes over the live run from the next pass
   (``Adaptive.swap``: it observes the workload afresh from the swap on, with choices as
   frequent as at a start); decisions issued stand. Refreshing the live policy's view
   on every drift without a promotion was measured and left: on ITP cluster06 followed
   by a light-tailed variant its windows averaged 1.17x the best heuristic's JCT,
   against 1.11x without (``RESULTS.md``, "The self-optimizing loop").

The loop knows only what the run has shown by a window's end: the jobs submitted in the
window that have completed by then, and for the others what is known (``_outcomes``: the
median of the completed durations longer than their work done so far,
``loop.step.Imputer``). Replaying
the completed jobs alone was tried first and left: in a heavy-tailed window the long
jobs are the ones still running, and without them every policy looked alike. A window's
replay also starts with the jobs the live run had waiting or running at its start
(``_backlog``, with the work they had left): the champion is judged where it runs.

Writes ``DIR/loop_report.json`` (``segments``, ``windows`` with ``index``, ``start``,
``end``, ``drift_detected``, ``promoted``, ``live_model`` and ``avg_jct`` of the live
policy and every heuristic on the jobs submitted in the window; drift scores,
retrainings and promotions with their evidence), ``DIR/timeline.png``, the registry
(``DIR/registry.db`` and ``DIR/models/`` unless ``--db``), each retraining's files under
``DIR/retrain-K/``, and ``manifest.json``.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import jsonsafe
from .. import manifest as manifest_mod
from ..agents.adaptive import CANDIDATES
from ..cluster import load_cluster
from ..errors import ConfigError
from ..evaluate import evaluate
from ..job import Job
from ..load import fit_load
from ..traces.registry import load_workload
from ..workflow import within
from ..workload import Workload
from .challenger import ChallengerConfig
from .compare import CompareConfig, policy_of
from .drift import DriftConfig
from .step import Imputer, Window, judge_window

HEURISTICS = CANDIDATES  # the adaptive scheduler's candidates, each replayed alone
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "rl-default.json"
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass
class LoopConfig:
    sources: list[str]
    out: str
    window: str = "2000"  # jobs per window, or a span: 36h, 3d, 7200s
    cluster: str = "itp-8gpu"  # the cluster, sized to --load over the whole replay
    load: float | None = 1.0  # offered load of the stitched replay (None: the cluster as is)
    champion: str = str(SHIPPED)  # the first champion's card
    heuristics: tuple[str, ...] = HEURISTICS
    seed: int = 0
    db: str | None = None  # registry store URL (default: sqlite in DIR)
    min_window_jobs: int = 50  # a window with fewer known outcomes is not acted on
    drift: DriftConfig = field(default_factory=DriftConfig)
    challenger: ChallengerConfig = field(default_factory=ChallengerConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)


# -- stitching and windows ----------------------------------------------------------------
def stitch(sources: list[str], seed: int = 0) -> tuple[Workload, list[dict]]:
    """The sources one after the other: each shifted to start one mean gap after the
    previous one's last arrival; job ids prefixed with the segment's index."""
    if not sources:
        raise ConfigError("--trace: name at least one SOURCE")
    jobs: list[Job] = []
    segments = []
    at = 0.0
    for k, src in enumerate(sources):
        w = load_workload(src, seed=seed).shifted()
        if not len(w):
            raise ConfigError(f"--trace {src}: no jobs")
        segments.append({"source": src, "start": at, "jobs": len(w)})
        jobs += [replace(j, job_id=f"{k}:{j.job_id}", submit_time=j.submit_time + at,
                         depends_on=tuple(f"{k}:{p}" for p in j.depends_on),
                         workflow_id=f"{k}:{j.workflow_id}" if j.workflow_id else "")
                 for j in w.jobs]
        gap = w.span / max(1, len(w) - 1)
        at = jobs[-1].submit_time + gap
    return Workload(jobs, source="+".join(sources)), segments


def parse_window(text: str) -> tuple[str, float]:
    """``("jobs", n)`` or ``("span", seconds)``; a ConfigError names --window."""
    t = str(text).strip()
    if t.isdigit() and int(t) >= 10:
        return "jobs", float(int(t))
    m = _SPAN.match(t)
    if m and float(m.group(1)) > 0:
        return "span", float(m.group(1)) * _UNIT[m.group(2)]
    raise ConfigError(f"--window must be a number of jobs (at least 10) or a span such as "
                      f"36h, 3d, 7200s; got {text!r}")


def windows(workload: Workload, window: str) -> list[tuple[float, float]]:
    """Consecutive [start, end) spans of submit time covering every job."""
    kind, size = parse_window(window)
    subs = np.array([j.submit_time for j in workload.jobs])
    last = float(subs[-1]) + 1.0
    if kind == "jobs":
        n = int(size)
        cuts = [float(subs[i]) for i in range(0, len(subs), n)]
        if len(cuts) > 1 and len(subs) - (len(cuts) - 1) * n < n // 2:
            cuts.pop()  # a short tail joins the window before it
    else:
        cuts = list(np.arange(float(subs[0]), last, size))
    edges = [*cuts, last]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def per_window_jct(result, spans: list[tuple[float, float]]) -> list[float | None]:
    """Average JCT of the jobs submitted in each span (None where none was)."""
    sub = np.array([js.submit for js in result.jobs])
    jct = np.array([js.finish - js.submit for js in result.jobs])
    out = []
    for a, b in spans:
        m = (sub >= a) & (sub < b)
        out.append(float(jct[m].mean()) if m.any() else None)
    return out


def from_live_state(result, spans: list[tuple[float, float]], starts: list[dict[int, float]],
                    spec, heuristics: tuple[str, ...], seed: int, ahead: int = 2
                    ) -> list[dict[str, float | None]]:
    """Per window, the average JCT its jobs would have had had each heuristic taken over
    from the live run's state at the window's start: the jobs then waiting or running
    (with the true work they had left) and every job submitted from then to the end of
    the ``ahead``-th window after, all with their true durations (known once the run is
    over), replayed under the heuristic. Unlike ``avg_jct`` (each heuristic replayed
    alone from the start, with a queue of its own making), this holds the inherited queue
    fixed: it tells the choices made in a window from the queue the window was given."""
    jobs = result.jobs
    out = []
    for k, (a, b) in enumerate(spans):
        end = spans[min(k + ahead, len(spans) - 1)][1]
        back = [replace(jobs[i].job, submit_time=a,
                        duration=max(jobs[i].job.duration - done, 1.0), censored=False)
                for i, done in starts[k].items()]
        ahead_jobs = [js.job for js in jobs if a <= js.submit < end]
        mine = {js.job.job_id for js in jobs if a <= js.submit < b}
        if not mine:
            out.append({h: None for h in heuristics})
            continue
        w = Workload(within(back + ahead_jobs), source=f"window {k} from the live state").shifted()
        row = {}
        for h in heuristics:
            res = evaluate(h, w, spec, seed=seed).result
            row[h] = float(np.mean([js.finish - js.submit for js in res.jobs
                                    if js.job.job_id in mine]))
        out.append(row)
    return out


# -- the loop -----------------------------------------------------------------------------
def run_loop(cfg: LoopConfig, console=None, command: str = "autoflow loop",
             trainer=None) -> dict:
    """The loop (see the module docstring). ``trainer(champion_card, window, cluster,
    folder, seed=, cfg=)`` makes a challenger (default ``train_challenger``); it returns
    the challenger's card and a summary with ``sources`` (the episode sources the
    comparison's synthetic variants come from) and ``fit``."""
    from rich.console import Console

    from ..sim.simulator import SimConfig, Simulator
    from .registry import Registry

    console = console or Console(stderr=True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    registry = Registry(cfg.db or f"sqlite:///{out / 'registry.db'}",
                        None if cfg.db else out / "models")  # a bad --db fails first
    workload, segments = stitch(cfg.sources, cfg.seed)
    base = load_cluster(cfg.cluster)
    fit = fit_load(base, workload, cfg.load) if cfg.load else None
    if fit is not None:
        workload, spec = fit.workload, fit.spec
        scale = fit.time_scale
    else:
        spec, scale = base, 1.0
    for s in segments:
        s["start"] *= scale
    spans = windows(workload, cfg.window)
    for s in segments:
        s["first_window"] = next(i for i, (a, b) in enumerate(spans) if s["start"] < b)
    console.print(f"{len(workload):,} jobs from {len(segments)} source(s) on {spec.name} "
                  f"({spec.total_gpus} GPUs), {len(spans)} windows")

    first = registry.register(Path(cfg.champion), kind="adaptive", name="initial champion",
                              lineage={"source": cfg.champion, "role": "initial champion"})
    if (registry.alias("champion") or {}).get("sha256") != first:
        registry.promote(first, reason="initial champion of autoflow loop",
                         evidence={"command": command})

    # the heuristics, each over the whole replay
    heur: dict[str, list] = {}
    for h in cfg.heuristics:
        heur[h] = per_window_jct(evaluate(h, workload, spec, seed=cfg.seed).result, spans)
        console.print(f"  {h}: replayed")

    live = policy_of(registry.path_of("champion"), "rl")
    sim = Simulator(workload, spec, live, SimConfig(seed=cfg.seed))
    sim.begin()
    live_sha = registry.alias("champion")["sha256"]
    reference = 0  # the window the champion was chosen on
    rows, events = [], []
    snap: dict[int, float] = {}  # unfinished jobs at the window's start: their work done
    starts: list[dict[int, float]] = []  # the same, per window (for the what-ifs at the end)
    for k, (a, b) in enumerate(spans):
        while sim.env.peek() < b:
            sim.step()
        hist = _history(sim)
        backlog = _backlog(sim, snap, a, hist)
        starts.append(snap)
        snap = _snapshot(sim)  # for the next window
        row = {"index": k, "start": a, "end": b, "live_model": live_sha,
               "drift_detected": False, "promoted": False, "retrained": False,
               "in_charge": live.candidate_names[live.active_index],
               "choices": [live.candidate_names[c] for t, _, c in live.choices if a <= t < b]}
        known, censored = _outcomes(sim, a, b, hist)
        row.update(jobs=len(known) + len(censored), outcomes=len(known),
                   censored=len(censored), backlog=len(backlog))
        if k == 0 or len(known) < cfg.min_window_jobs:
            if k == 0:
                ref_jobs = known
            rows.append(row)
            continue
        ra, rb = spans[reference]
        win = Window(k, (a, b), known, censored, backlog)
        update, made, promoted = judge_window(registry, win, ref_jobs, (ra, rb), spec,
                                              cfg.cluster, cfg, out / f"retrain-{k}",
                                              command, trainer, console)
        row.update(update)
        events += made
        if promoted is not None:
            new = policy_of(registry.path_of(promoted), "rl")
            live.swap(new.selector, history=[js for js in sim.jobs
                                             if a <= js.submit < b and js.finish is not None],
                      origin=a, pinned=new.pinned)
            live_sha, reference, ref_jobs = promoted, k, known
        rows.append(row)
    while sim.step():
        pass
    result = sim.result(time.perf_counter() - t0)
    live_jct = per_window_jct(result, spans)
    taken = from_live_state(result, spans, starts, spec, cfg.heuristics, cfg.seed)
    for row, v, t in zip(rows, live_jct, taken):
        row["avg_jct"] = {"live": v, **{h: heur[h][row["index"]] for h in cfg.heuristics}}
        row["avg_jct_from_live_state"] = t
    report = {"segments": segments, "windows": rows, "retrainings": events,
              "cluster": {"name": spec.name, "gpus": spec.total_gpus,
                          **(fit.to_dict() if fit else {})},
              "summary": summarize(rows, cfg.heuristics),
              "registry": {"url": registry.url, "champion": registry.alias("champion")},
              "wall_s": time.perf_counter() - t0}
    man = manifest_mod.build(command, asdict(cfg), cfg.seed)
    report["manifest"] = man
    jsonsafe.write(out / "loop_report.json", report)
    manifest_mod.write(out / "manifest.json", man)
    from .timeline import plot_timeline
    plot_timeline(report, out / "timeline.png")
    console.print(f"wrote {out / 'loop_report.json'}, {out / 'timeline.png'}")
    return report


def _history(sim) -> Imputer:
    """The durations of the jobs completed so far (``loop.step.Imputer``)."""
    return Imputer([(js.job.num_gpus, js.job.duration) for js in sim.jobs
                    if js.finish is not None])


def _work_done(js, now: float) -> float:
    return js.running_progress(now) if js.status == "running" else js.progress


def _known_duration(js, now: float, hist: Imputer) -> float:
    """The true duration of a completed job; for another, the history's imputation
    given its work done (``Imputer``)."""
    if js.finish is not None:
        return float(js.job.duration)
    return hist.duration(js.job.num_gpus, _work_done(js, now))


def _outcomes(sim, a: float, b: float, hist: Imputer
              ) -> tuple[list[Job], list[Job]]:
    """The jobs submitted in [a, b): those completed by now (true durations: outcomes),
    and the others with what is known of them as their duration (``censored``): the
    history's imputation given the work done so far (``loop.step.Imputer``: the median
    of the completed durations longer than that); ``extra["censored"]`` says whether it
    is running or waiting."""
    now = sim.env.now
    known, censored = [], []
    for js in sim.jobs:
        if a <= js.submit < b:
            if js.finish is not None:
                known.append(js.job)
            else:
                how = "running" if js.status == "running" else "waiting"
                censored.append(replace(js.job, duration=_known_duration(js, now, hist),
                                        censored=True,
                                        extra={**js.job.extra, "censored": how}))
    return known, censored


def _snapshot(sim) -> dict[int, float]:
    """Work done by every job submitted and not finished by now."""
    now = sim.env.now
    return {js.idx: _work_done(js, now) for js in sim.jobs
            if js.submit <= now and js.finish is None}


def _backlog(sim, snap: dict[int, float], a: float,
             hist: Imputer) -> list[Job]:
    """The jobs the window started with (waiting or running at ``a``, from ``snap``),
    submitted at ``a`` with what they had left then (by their true duration where they
    have completed since, else as ``_known_duration``): a window's replay starts from
    the queue the live run had, not from an empty cluster."""
    now = sim.env.now
    out = []
    for idx, done in snap.items():
        js = sim.jobs[idx]
        left = _known_duration(js, now, hist) - done
        out.append(replace(js.job, submit_time=a, duration=max(left, 1.0),
                           extra={**js.job.extra, "backlog": True}))
    return out


def summarize(rows: list[dict], heuristics: tuple[str, ...]) -> dict:
    """Promotions, the first drift and promotion, and the live policy against the best
    heuristic per window after the first promotion."""
    first_promo = next((r["index"] for r in rows if r["promoted"]), None)
    first_drift = next((r["index"] for r in rows if r["drift_detected"]), None)
    after, taken = [], []
    for r in rows:
        if first_promo is not None and r["index"] > first_promo and r["avg_jct"]["live"]:
            best = min(r["avg_jct"][h] for h in heuristics if r["avg_jct"][h] is not None)
            after.append(r["avg_jct"]["live"] / best)
            t = [v for v in r["avg_jct_from_live_state"].values() if v is not None]
            taken.append(r["avg_jct"]["live"] / min(t))
    return {"windows": len(rows), "promotions": sum(r["promoted"] for r in rows),
            "retrainings": sum(r["retrained"] for r in rows), "first_drift": first_drift,
            "first_promotion": first_promo,
            "live_vs_best_after_promotion": after,
            "worst_live_vs_best_after_promotion": max(after) if after else None,
            "live_vs_best_from_live_state_after_promotion": taken,
            "worst_live_vs_best_from_live_state_after_promotion": max(taken) if taken else None}
