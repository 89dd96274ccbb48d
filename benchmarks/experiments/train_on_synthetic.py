"""2026-11-23: train on synthetic, test on real.

Fits a generator (default ``copula``) on each of ITP clusters 01–03, trains one agent
only on workloads sampled from those generators and one on windows of the real 01–03
traces (same command otherwise), then benchmarks both beside the heuristics on the real
cluster08, which neither saw. Runs the real CLI (``autoflow generate fit``, ``autoflow
train``, ``autoflow bench``); writes ``DIR/summary.json`` and ``manifest.json`` and
prints a markdown table.

    python benchmarks/experiments/train_on_synthetic.py --out runs/train-on-synthetic \\
        --timesteps 10000 --imitation-episodes 16

Both agents follow the shipped recipe (a LAS warm start, then PPO); with
``--imitation-episodes 0`` they learn by PPO alone, from a random policy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from autoflow import manifest

ITP = "../shared/traces/itp"
TRAIN = ("cluster01", "cluster02", "cluster03")
TEST = f"itp:{ITP}/cluster08.csv"


def cli(*args: str, log: Path) -> None:
    cmd = [sys.executable, "-m", "autoflow", *args]
    print("$ autoflow " + " ".join(args), flush=True)
    with open(log, "a") as f:
        f.write("$ autoflow " + " ".join(args) + "\n")
        f.flush()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/train-on-synthetic")
    ap.add_argument("--model", default="copula")
    ap.add_argument("--timesteps", type=int, default=10000)
    ap.add_argument("--imitation-episodes", type=int, default=16,
                    help="LAS demonstrations (on the arm's own workloads) before PPO; 0: "
                         "PPO alone from a random policy")
    ap.add_argument("--loads", default="0.9,1.1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    seed = str(args.seed)

    gens = []
    for c in TRAIN:
        path = out / "gen" / f"{c}.pkl"
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            cli("generate", "fit", "--trace", f"itp:{ITP}/{c}.csv", "--model", args.model,
                "--seed", seed, "--out", str(path), log=log)
        gens.append(f"gen:{path}@itp-8gpu")
    arms = {"synthetic": ",".join(gens),
            "real": ",".join(f"itp:{ITP}/{c}.csv" for c in TRAIN)}
    common = ["--timesteps", str(args.timesteps), "--imitation-episodes",
              str(args.imitation_episodes), "--seed", seed]
    if args.imitation_episodes == 0:
        common += ["--dagger-rounds", "0"]
    for arm, sources in arms.items():
        if not (out / arm / "best_model.zip").exists():
            cli("train", "--workloads", sources, *common, "--out", str(out / arm), log=log)

    rows = []
    for load in args.loads.split(","):
        bench_dir = out / f"bench-cluster08-{load}"
        pols = ["fifo", "sjf", "las"] + [f"rl:{out / arm / 'best_model.zip'}" for arm in arms]
        if not (bench_dir / "results.json").exists():  # a rerun keeps what was measured
            cli("bench", "--trace", TEST, "--cluster", "itp-8gpu", "--load", load,
                "--policies", ",".join(pols), "--out", str(bench_dir), log=log)
        res = json.loads((bench_dir / "results.json").read_text())["policies"]
        row = {"load": float(load)}
        for p in pols:
            key = p if not p.startswith("rl:") else "rl-" + Path(p).parent.name
            row[key] = {"avg_jct": res[p]["avg_jct"], "p99_jct": res[p]["p99_jct"],
                        "vs_fifo": res[p]["avg_jct_vs_fifo"]}
        syn, real = row["rl-synthetic"]["avg_jct"], row["rl-real"]["avg_jct"]
        row["gap"] = syn / real - 1.0
        rows.append(row)

    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    manifest.write(out / "manifest.json", manifest.build(
        "python benchmarks/experiments/train_on_synthetic.py", vars(args), args.seed))
    print("| cluster08 load | fifo | sjf | las | rl trained on real 01–03 | "
          "rl trained on synthetic 01–03 | gap (synthetic / real − 1) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = " | ".join(f"{r[k]['avg_jct']:,.0f} ({r[k]['vs_fifo']:.2f}×)"
                           for k in ("fifo", "sjf", "las", "rl-real", "rl-synthetic"))
        print(f"| {r['load']} | {cells} | {r['gap']:+.1%} |")


if __name__ == "__main__":
    main()
