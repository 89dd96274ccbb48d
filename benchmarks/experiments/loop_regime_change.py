"""2026-12-01: the self-optimizing loop across a regime change (issue 20's bar).

A heavy-tailed real trace (ITP cluster06, 2,396 jobs) stitched to a light-tailed
variant of it: a generator fitted on cluster06 (``empirical``) sampled with the CV of
durations set to 0.3 (``autoflow generate sample --duration-cv 0.3``), 2,400 jobs. The
loop (``autoflow loop``) replays both one after the other on ``itp-8gpu`` sized to
``--load``, in windows of ``--window`` jobs, starting from the shipped adaptive scheduler.

Bar: the change is detected within two windows of the segment's first window; after the
first promotion the live policy's average JCT per window is within 5% of the best
heuristic's on that window. Two readings of "the best heuristic on that window" are
printed: each heuristic replayed alone over the whole stitched workload (``avg_jct``: its
own queue), and each heuristic taking over from the live run's state at the window's
start (``avg_jct_from_live_state``: the queue the live policy inherited). Also reported: windows flagged as drifted BEFORE the change
(false alarms).

Writes ``DIR/data/`` (the generator and the light-tailed CSV), ``DIR/loop/``
(``loop_report.json``, ``timeline.png``, the registry) and ``DIR/results.json`` +
``DIR/manifest.json``; prints a markdown table.

    python benchmarks/experiments/loop_regime_change.py --out runs/loop-regime
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoflow.generators.generator import fit_generator
from autoflow.generators.knobs import Knobs, apply_knobs
from rich.console import Console

from autoflow import manifest
from autoflow.loop.compare import CompareConfig
from autoflow.loop.offline import LoopConfig, run_loop
from autoflow.traces import normalized
from autoflow.traces.registry import load_workload
from autoflow.workload import Workload

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ROOT.parent / "shared" / "traces" / "itp" / "cluster06.csv"
LIGHT_CV = 0.3
LIGHT_JOBS = 2400


def light_variant(folder: Path, seed: int) -> Path:
    """cluster06's generator sampled with light-tailed durations."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    w = load_workload(f"itp:{HEAVY}")
    gen = fit_generator(w, model="empirical", seed=seed)
    gen.save(folder / "cluster06-empirical.npz")
    sample = gen.sample(LIGHT_JOBS, seed=seed)
    light = apply_knobs(sample, Knobs(duration_cv=LIGHT_CV), np.random.default_rng(seed))
    path = folder / "cluster06-light.csv"
    normalized.write(Workload(light.jobs, source="cluster06 light variant"), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--window", default="400")
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replays", type=int, default=3, help="paired real-window replays")
    ap.add_argument("--variants", type=int, default=4, help="paired synthetic variants")
    args = ap.parse_args()
    light = light_variant(args.out / "data", args.seed + 1)
    sources = [f"itp:{HEAVY}", f"csv:{light}"]
    cfg = LoopConfig(sources=sources, out=str(args.out / "loop"), window=args.window,
                     load=args.load, seed=args.seed,
                     compare=CompareConfig(replays=args.replays, variants=args.variants,
                                           seed=args.seed))
    command = ("python benchmarks/experiments/loop_regime_change.py "
               + " ".join(sys.argv[1:]))
    rep = run_loop(cfg, Console(stderr=True), command=command)
    change = rep["segments"][1]["first_window"]
    rows = rep["windows"]
    detected = next((r["index"] for r in rows if r["index"] >= change and
                     r["drift_detected"]), None)
    false_alarms = [r["index"] for r in rows if 0 < r["index"] < change and r["drift_detected"]]
    # how well the loop's window replays (unfinished jobs imputed) pick the heuristic that
    # is best from the live state (true durations): the pick's JCT over the best's
    regret = []
    for r in rows:
        p, t = r.get("performance"), r["avg_jct_from_live_state"]
        if p and all(t[h] is not None for h in p["heuristics"]):
            pick = min(p["heuristics"], key=p["heuristics"].get)
            regret.append(t[pick] / min(t[h] for h in p["heuristics"]))
    summary = {**rep["summary"], "change_window": change, "detected_at": detected,
               "window_replay_pick_regret": regret,
               "windows_to_detect": None if detected is None else detected - change + 1,
               "false_alarms_before_change": false_alarms}
    print("| window | segment | drift | retrained | promoted | in charge at end | live / best "
          "heuristic | best heuristic | live / best taking over from the live state | best "
          "taking over |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a = r["avg_jct"]
        best = min((k for k in a if k != "live"), key=lambda k: a[k])
        t = {k: v for k, v in r["avg_jct_from_live_state"].items() if v is not None}
        tbest = min(t, key=t.get) if t else None
        seg = "heavy" if r["index"] < change else "light"
        print(f"| {r['index']} | {seg} | {'yes' if r['drift_detected'] else ''} | "
              f"{'yes' if r['retrained'] else ''} | {'**yes**' if r['promoted'] else ''} | "
              f"{r['in_charge']} | {a['live'] / a[best]:.3f} | {best} | "
              f"{a['live'] / t[tbest]:.3f} | {tbest} |")
    print(summary)
    manifest.save_run(args.out, {"summary": summary, "windows": rows}, command,
                      {"sources": sources, "window": args.window, "load": args.load,
                       "light_cv": LIGHT_CV, "light_jobs": LIGHT_JOBS, "replays": args.replays,
                       "variants": args.variants}, args.seed)


if __name__ == "__main__":
    main()
