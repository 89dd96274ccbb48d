"""Scheduling quality: every policy on the traces the shipped model never saw.

    python benchmarks/quality.py [--traces ../shared/traces] [--loads 0.9,1.1]
        [--policies fifo,sjf,las,las-fcfs,easy-backfill,rl,sjf-oracle,srtf-oracle] [--out runs/quality]
    python benchmarks/quality.py --tables runs/quality/*/results.json   # tables only

The cases of the learned scheduler's bar (``RESULTS.md``): ITP cluster06 and cluster08 on
``itp-8gpu``, and Alibaba openb on its own node list, each at every ``--loads`` value.
Each case is one ``autoflow bench`` run (``run_bench``, through ``autoflow.evaluate``):
``DIR/CASE/`` receives the results.json, manifest.json and jct_cdf.png that the command
would write, and the manifest records that command. Prints one table per case (the
heuristics' tables in RESULTS.md) and, when a learned policy (``rl``, ``rl:PATH``) is
among the policies, the bar table: it against fifo and the best non-oracle heuristic.
Traces that are absent are skipped, and said so.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from rich.console import Console

from autoflow.bench import BenchConfig, run_bench

ROOT = Path(__file__).resolve().parents[1]
POLICIES = "fifo,sjf,las,las-fcfs,gittins,easy-backfill,rl,sjf-oracle,srtf-oracle"
HEURISTICS = ("sjf", "las", "las-fcfs", "gittins", "easy-backfill")  # the deployable ones the bar compares with


def cases(traces: Path, loads: list[float]) -> tuple[list[tuple], list[str]]:
    """(name, trace source, cluster source, load) for every trace present; paths absent."""
    sources, missing = [], []
    for name in ("cluster06", "cluster08"):
        path = traces / "itp" / f"{name}.csv"
        if path.exists():
            sources.append((name, f"itp:{path}", "itp-8gpu"))
        else:
            missing.append(str(path))
    pods = traces / "alibaba-openb" / "openb_pod_list_default.csv"
    nodes = traces / "alibaba-openb" / "openb_node_list_gpu_node.csv"
    if pods.exists() and nodes.exists():
        sources.append(("openb", f"alibaba-openb:{pods}", f"alibaba-openb:{nodes}"))
    else:
        missing.append(str(pods))
    return [(n, t, c, load) for n, t, c in sources for load in loads], missing


def case_table(r: dict) -> str:
    """One bench run as a Markdown table with its title and command."""
    man = r["manifest"]
    s0 = man["config"]["setups"][0]
    mix = ", ".join(f"{k}: {v}" for k, v in s0["cluster"]["mix"].items())
    title = (f"### `{man['config']['trace']}` at `--load {man['config']['load']}`: "
             f"{s0['jobs']:,} jobs, {s0['cluster']['gpus']} GPUs ({mix}), offered load "
             f"{s0['offered_load']:.2f}")
    if s0.get("time_scale", 1.0) != 1.0:
        title += f", arrival times ×{s0['time_scale']:.3g}"
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


BAR_HEADER = ("| trace | load (offered) | GPUs | fifo avg JCT (s) | best heuristic avg JCT | "
              "rl avg JCT | rl × fifo | rl × best | p99 JCT rl / best | SLO misses rl / best "
              "| guard fallbacks |\n" + "|" + "---|" * 11)


def bar_row(r: dict) -> str | None:
    """The learned policy against fifo and the best heuristic of one run (None without a
    learned policy or a heuristic)."""
    p = r["policies"]
    learned = next((n for n in p if n == "rl" or n.startswith("rl:")), None)
    heuristics = [n for n in HEURISTICS if n in p]
    if learned is None or not heuristics or "fifo" not in p:
        return None
    cfg = r["manifest"]["config"]
    s0 = cfg["setups"][0]
    trace = cfg["trace"].split("/")[-1]
    best = min(heuristics, key=lambda n: p[n]["avg_jct"])
    rl, b, f = p[learned], p[best], p["fifo"]
    return (f"| {trace} | {cfg['load']} ({s0['offered_load']:.2f}) | {s0['cluster']['gpus']} "
            f"| {f['avg_jct']:,.0f} | {best} {b['avg_jct']:,.0f} | {rl['avg_jct']:,.0f} "
            f"| **{rl['avg_jct'] / f['avg_jct']:.2f}** | **{rl['avg_jct'] / b['avg_jct']:.2f}** "
            f"| {rl['p99_jct']:,.0f} / {b['p99_jct']:,.0f} "
            f"| {rl['slo_violations']:.0f} / {b['slo_violations']:.0f} of {rl['inference_jobs']} "
            f"| {_guard(rl)} |")


def _guard(m: dict) -> str:
    """A slot agent's guard fallbacks / decisions; the adaptive scheduler has no guard."""
    g = m.get("guard")
    return f"{g['invalid'] + g['idle_wait']} / {g['decisions']:,}" if g else "-"


def report(results: list[dict]) -> str:
    parts = [case_table(r) for r in results]
    rows = [row for row in map(bar_row, results) if row]
    if rows:
        parts.append("\n".join([BAR_HEADER, *rows]) + "\n")
    return "\n".join(parts)


def run(found: list[tuple], policies: str, out: Path) -> list[dict]:
    console = Console(stderr=True)
    results = []
    for name, trace, cluster, load in found:
        folder = out / f"{name}-{load:g}"
        command = shlex.join(["autoflow", "bench", "--trace", trace, "--cluster", cluster,
                              "--load", f"{load:g}", "--policies", policies,
                              "--out", str(folder)])
        console.print(f"[bold]{name} at --load {load:g}[/]")
        cfg = BenchConfig(trace=trace, policies=policies.split(","), out=str(folder),
                          cluster=cluster, load=load)
        results.append(run_bench(cfg, console, command=command))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"),
                    help="folder with itp/ and alibaba-openb/ (default ../shared/traces)")
    ap.add_argument("--loads", default="0.9,1.1")
    ap.add_argument("--policies", default=POLICIES)
    ap.add_argument("--out", default=str(ROOT / "runs" / "quality"))
    ap.add_argument("--tables", nargs="+", metavar="RESULTS_JSON",
                    help="print the tables of existing bench runs instead of running")
    args = ap.parse_args(argv)
    if args.tables:
        print(report([json.loads(Path(p).read_text()) for p in args.tables]))
        return 0
    found, missing = cases(Path(args.traces), [float(x) for x in args.loads.split(",")])
    for m in missing:
        print(f"skipped: {m} not found", file=sys.stderr)
    if not found:
        print("no traces found: nothing to measure", file=sys.stderr)
        return 0
    print(report(run(found, args.policies, Path(args.out))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
