"""2026-12-01: does the duration predictor help the policies? (issue 19's downstream bar)

Bar: ``sjf:ssl`` closes >= 50% of the average-JCT gap between ``sjf`` (history
estimator) and ``sjf-oracle`` on traces held out from the predictor's training, at loads
0.9 and 1.1.

Cases: ITP cluster06 and cluster08 on ``itp-8gpu`` and (``--openb``) Alibaba openb on
its node list, fitted to each ``--loads`` value (``autoflow.bench.prepare_fit``, as
``autoflow bench --load``). The shipped predictor (``autoflow/models/predictor-v1``) was
trained on ITP cluster01, 02, 03 and 05 only; ``--model DIR`` names another folder from
``autoflow predictor fit`` (every ``:ssl`` policy then reads ``:ssl=DIR``). Each case is
replayed ``--replays`` times (replay 0 as is, r > 0 perturbed as in
``benchmarks/adaptive_bar.py``: submit times jittered ±60 s, restart overhead in
[25, 35] s, seeded with r); every policy plays the same replays.

Per case and replay, ``closed = (sjf - sjf:ssl) / (sjf - sjf-oracle)`` of the average JCT
(1: as good as the oracle, 0: no better than history, < 0: worse; with ``gittins``,
``gittins:ssl`` and ``srtf-oracle`` among ``--policies``, the same for ``gittins:ssl``
between ``gittins`` and ``srtf-oracle``, the preemptive pair); the table gives its
mean over replays (and their range), the summary the median and minimum over cases.
``sim_s`` is each policy's wall time on the replay, for the slowdown of ``:ssl``.

    python benchmarks/experiments/ssl_policies.py --out runs/ssl-policies
    python benchmarks/experiments/ssl_policies.py --model /tmp/mlp --out runs/ssl-mlp
    python benchmarks/experiments/ssl_policies.py --openb --out runs/ssl-gittins \
        --policies fifo,las,sjf,sjf:ssl,sjf-oracle,gittins,gittins:ssl,srtf-oracle
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from autoflow import manifest as manifest_mod
from autoflow.bench import prepare_fit
from autoflow.evaluate import evaluate
from autoflow.perturb import perturbed
from autoflow.policies import make_policy

ROOT = Path(__file__).resolve().parents[2]
POLICIES = "fifo,las,sjf,sjf:ssl,sjf-oracle,easy-backfill,easy-backfill:ssl"


def cases(traces: Path, loads: list[float], openb: bool) -> list[tuple[str, str, str, float]]:
    out = []
    for name in ("cluster06", "cluster08"):
        path = traces / "itp" / f"{name}.csv"
        if path.exists():
            out += [(name, f"itp:{path}", "itp-8gpu", ld) for ld in loads]
    pods = traces / "alibaba-openb" / "openb_pod_list_default.csv"
    nodes = traces / "alibaba-openb" / "openb_node_list_gpu_node.csv"
    if openb and pods.exists() and nodes.exists():
        out += [("openb", f"alibaba-openb:{pods}", f"alibaba-openb:{nodes}", ld)
                for ld in loads]
    return out


def _spec(policy: str, model: str | None) -> str:
    if model and policy.endswith(":ssl"):
        return f"{policy}={model}"
    return policy


def run_case(args: tuple) -> dict:
    name, trace, cluster, load, policies, replays, model = args
    fit = prepare_fit(trace, cluster, load, seed=0)
    out = {"case": name, "trace": trace, "cluster": cluster, "load": load,
           "gpus": fit.spec.total_gpus, "jobs": len(fit.workload), "replays": []}
    for r in range(replays):
        w, cfg = perturbed(fit.workload, r)
        runs = {}
        for p in policies:
            pol = make_policy(_spec(p, model))
            t = time.perf_counter()
            m = evaluate(pol, w, fit.spec, cfg).metrics
            runs[p] = {"avg_jct": m["avg_jct"], "p99_jct": m["p99_jct"],
                       "sim_s": time.perf_counter() - t}
        out["replays"].append({"replay": r, "policies": runs})
    return out


def closed(runs: dict, ssl: str = "sjf:ssl", base: str = "sjf",
           oracle: str = "sjf-oracle") -> float:
    b, s, o = (runs[k]["avg_jct"] for k in (base, ssl, oracle))
    return (b - s) / (b - o) if b != o else float("nan")


def table(results: list[dict], policies: list[str]) -> str:
    shown = [p for p in policies]
    git = "gittins" in shown and "gittins:ssl" in shown and "srtf-oracle" in shown
    head = ("| case | load | jobs | GPUs | " + " | ".join(f"{p} avg JCT (h)" for p in shown)
            + " | gap closed by sjf:ssl | easy-backfill:ssl vs easy-backfill |"
            + (" gap closed by gittins:ssl (gittins -> srtf-oracle) |" if git else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    shares = []
    for c in results:
        reps = c["replays"]
        avg = {p: statistics.mean(r["policies"][p]["avg_jct"] for r in reps) / 3600
               for p in shown}
        share = statistics.mean(closed(r["policies"]) for r in reps)
        per = [closed(r["policies"]) for r in reps]
        shares.append(share)
        spread = f" [{min(per):.0%}, {max(per):.0%}]" if len(per) > 1 else ""
        easy = ""
        if "easy-backfill" in shown and "easy-backfill:ssl" in shown:
            easy = f"{avg['easy-backfill:ssl'] / avg['easy-backfill'] - 1:+.1%}"
        gshare = ""
        if git:
            g = [closed(r["policies"], "gittins:ssl", "gittins", "srtf-oracle") for r in reps]
            gshare = f" {statistics.mean(g):.0%} |"
        lines.append(f"| {c['case']} | {c['load']:g} | {c['jobs']} | {c['gpus']} | "
                     + " | ".join(f"{avg[p]:.3f}" for p in shown)
                     + f" | {share:.0%}{spread} | {easy} |{gshare}")
    lines.append("")
    lines.append(f"gap closed: median {statistics.median(shares):.0%}, min {min(shares):.0%}, "
                 f"cases >= 50%: {sum(s >= 0.5 for s in shares)} of {len(shares)}")
    if "sjf" in shown and "sjf:ssl" in shown:
        t_sjf = sum(r["policies"]["sjf"]["sim_s"] for c in results for r in c["replays"])
        t_ssl = sum(r["policies"]["sjf:ssl"]["sim_s"] for c in results for r in c["replays"])
        lines.append(f"sim wall time: sjf {t_sjf:.1f} s, sjf:ssl {t_ssl:.1f} s "
                     f"({t_ssl / t_sjf:.1f}x)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    ap.add_argument("--loads", default="0.9,1.1")
    ap.add_argument("--replays", type=int, default=1)
    ap.add_argument("--policies", default=POLICIES)
    ap.add_argument("--model", default=None, help="predictor folder for every :ssl policy "
                    "(default: the shipped one)")
    ap.add_argument("--openb", action="store_true", help="add Alibaba openb")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    loads = [float(x) for x in a.loads.split(",")]
    policies = [p.strip() for p in a.policies.split(",") if p.strip()]
    for p in policies:
        make_policy(_spec(p, a.model))  # a bad spec or model fails before any run
    todo = [(*c, policies, a.replays, a.model) for c in cases(a.traces, loads, a.openb)]
    with ProcessPoolExecutor(a.jobs) as ex:
        results = list(ex.map(run_case, todo))
    text = table(results, policies)
    print(text)
    if a.out:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
        manifest_mod.save_run(a.out, {"cases": results},
                              "python benchmarks/experiments/ssl_policies.py", config)
        (a.out / "table.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
