"""The learned scheduler's bar: rl against fifo and the best non-oracle heuristic.

    python benchmarks/bar_table.py runs/bar-*/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEURISTICS = ("sjf", "las", "easy-backfill")


def row(path: str) -> str:
    r = json.loads(Path(path).read_text())
    p = r["policies"]
    cfg = r["manifest"]["config"]
    s0 = cfg["setups"][0]
    trace = cfg["trace"].split("/")[-1]
    best = min(HEURISTICS, key=lambda n: p[n]["avg_jct"])
    rl, b, f = p["rl"], p[best], p["fifo"]
    return (f"| {trace} | {cfg['load']} ({s0['offered_load']:.2f}) | {s0['cluster']['gpus']} "
            f"| {f['avg_jct']:,.0f} | {best} {b['avg_jct']:,.0f} | {rl['avg_jct']:,.0f} "
            f"| **{rl['avg_jct'] / f['avg_jct']:.2f}** | **{rl['avg_jct'] / b['avg_jct']:.2f}** "
            f"| {rl['p99_jct']:,.0f} / {b['p99_jct']:,.0f} "
            f"| {rl['slo_violations']:.0f} / {b['slo_violations']:.0f} of {rl['inference_jobs']} "
            f"| {rl['guard']['invalid'] + rl['guard']['idle_wait']} / {rl['guard']['decisions']:,} |")


if __name__ == "__main__":
    print("| trace | load (offered) | GPUs | fifo avg JCT (s) | best heuristic avg JCT | "
          "rl avg JCT | rl × fifo | rl × best | p99 JCT rl / best | SLO misses rl / best "
          "| guard fallbacks |")
    print("|" + "---|" * 11)
    for path in sys.argv[1:]:
        print(row(path))
