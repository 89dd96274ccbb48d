"""Markdown table of a bench run, for RESULTS.md.

    python benchmarks/results_table.py runs/c08/results.json [more results.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(path: str) -> str:
    r = json.loads(Path(path).read_text())
    man = r["manifest"]
    s0 = man["config"]["setups"][0]
    mix = ", ".join(f"{k}: {v}" for k, v in s0["cluster"]["mix"].items())
    title = (f"### `{man['config']['trace']}` at `--load {man['config']['load']}`: "
             f"{s0['jobs']:,} jobs, {s0['cluster']['gpus']} GPUs ({mix}), offered load "
             f"{s0['offered_load']:.2f}")
    header = ("| policy | avg JCT (s) | × fifo | p50 JCT | p99 JCT | avg wait | bnd slowdown "
              "| GPU alloc | SLO miss | preemptions |")
    lines = [title, "", f"Command: `{man['command']}`", "", header, "|" + "---|" * 10]
    for name, m in r["policies"].items():
        label = f"{name} (oracle)" if m.get("oracle") else name
        lines.append(
            f"| {label} | {m['avg_jct']:,.0f} | {m['avg_jct_vs_fifo']:.2f} | {m['p50_jct']:,.0f} "
            f"| {m['p99_jct']:,.0f} | {m['avg_wait']:,.0f} | {m['avg_bounded_slowdown']:.2f} "
            f"| {m['gpu_allocation']:.1%} | {m['slo_violations']:.0f}/{m['inference_jobs']} "
            f"| {m['preemptions']:.0f} |")
        if "guard" in m:
            g = m["guard"]
            lines[-1] += f" <!-- guard: {g['invalid'] + g['idle_wait']} of {g['decisions']} -->"
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print("\n".join(table(p) for p in sys.argv[1:]))
