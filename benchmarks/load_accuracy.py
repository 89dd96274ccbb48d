"""Does ``--load RHO`` reach RHO on every real trace?

    python benchmarks/load_accuracy.py [--traces ../shared/traces] [--loads 0.5,0.9,1.1]
        [--openb-loads 0.5,0.9,1.0,1.1] [--out runs/load_accuracy]

For the ITP clusters on ``itp-8gpu`` and Alibaba openb on its own node list, fits the
cluster (and, where resizing falls short, the arrival times) to each load as
``autoflow bench`` does, and records the target, the achieved offered load, GPUs, nodes,
the method and the time-scale factor. Writes ``results.json`` and ``manifest.json`` to
``--out`` and prints a Markdown table. Traces that are absent are skipped, and said so.

Run with an older checkout first on the path (``PYTHONPATH=OLD python ...``), it
measures that code: from before ``autoflow.load`` existed, resizing only
(``scale_to_load``) and that code's own offered load (over the spread of submit times).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from autoflow import manifest as manifest_mod
from autoflow.cluster import load_cluster
from autoflow.errors import AutoflowError
from autoflow.traces.registry import load_workload

ROOT = Path(__file__).resolve().parents[1]
ITP = ("cluster01", "cluster02", "cluster03", "cluster05", "cluster06", "cluster08")
TOLERANCE = 0.03


def cases(traces: Path, loads: list[float], openb_loads: list[float]) -> tuple[list, list]:
    """(name, trace source, cluster source, loads) for every trace present; names absent."""
    found, missing = [], []
    for name in ITP:
        path = traces / "itp" / f"{name}.csv"
        if path.exists():
            found.append((name, f"itp:{path}", "itp-8gpu", loads))
        else:
            missing.append(str(path))
    pods = traces / "alibaba-openb" / "openb_pod_list_default.csv"
    nodes = traces / "alibaba-openb" / "openb_node_list_gpu_node.csv"
    if pods.exists() and nodes.exists():
        found.append(("openb", f"alibaba-openb:{pods}", f"alibaba-openb:{nodes}", openb_loads))
    else:
        missing.append(str(pods))
    return found, missing


def fitter():
    """``(spec, workload, rho) -> dict`` with this checkout's way of reaching a load."""
    import autoflow.cluster

    # (an editable install would find this checkout's load.py for an older one's package)
    if not Path(autoflow.cluster.__file__).with_name("load.py").exists():  # resizing only
        from autoflow.bench import offered_load
        from autoflow.cluster import scale_to_load

        def legacy(spec, workload, rho):
            small = scale_to_load(spec, workload, rho)
            return {"spec": small, "method": "resize", "time_scale": 1.0,
                    "achieved": offered_load(workload, small)}
        return legacy
    from autoflow.load import fit_load

    def fit(spec, workload, rho):
        f = fit_load(spec, workload, rho)
        return {"spec": f.spec, "method": f.method, "time_scale": f.time_scale,
                "achieved": f.achieved}
    return fit


def measure(found: list) -> list[dict]:
    fit = fitter()
    rows = []
    for name, trace, cluster, loads in found:
        workload = load_workload(trace).shifted()
        full = load_cluster(cluster)
        for rho in loads:
            row = {"trace": name, "target": rho}
            try:
                r = fit(full, workload, rho)
            except AutoflowError as e:  # the checkout refuses: recorded, not hidden
                row.update(error=str(e), within=False)
            else:
                row.update(achieved=round(r["achieved"], 4), gpus=r["spec"].total_gpus,
                           nodes=len(r["spec"].nodes), method=r["method"],
                           time_scale=round(r["time_scale"], 4),
                           within=abs(r["achieved"] / rho - 1) <= TOLERANCE)
            rows.append(row)
            print(f"{name} {rho}: {row}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| trace | target | achieved | within ±3% | GPUs | nodes | method | time scale |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['trace']} | {r['target']} | error: {r['error']} | no | | | | |")
            continue
        lines.append(f"| {r['trace']} | {r['target']} | {r['achieved']:.3f} | "
                     f"{'yes' if r['within'] else '**no**'} | {r['gpus']} | {r['nodes']} | "
                     f"{r['method']} | {r['time_scale']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"),
                    help="folder with itp/ and alibaba-openb/ (default ../shared/traces)")
    ap.add_argument("--loads", default="0.5,0.9,1.1", help="loads for the ITP traces")
    ap.add_argument("--openb-loads", default="0.5,0.9,1.0,1.1", help="loads for openb")
    ap.add_argument("--out", default="runs/load_accuracy", help="folder for the JSON files")
    args = ap.parse_args(argv)
    loads = [float(x) for x in args.loads.split(",")]
    openb_loads = [float(x) for x in args.openb_loads.split(",")]
    found, missing = cases(Path(args.traces), loads, openb_loads)
    for m in missing:
        print(f"skipped: {m} not found", file=sys.stderr)
    if not found:
        print("no traces found: nothing to measure", file=sys.stderr)
        return 0
    rows = measure(found)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"traces": args.traces, "loads": loads, "openb_loads": openb_loads,
              "tolerance": TOLERANCE, "missing": missing}
    man = manifest_mod.build("python benchmarks/load_accuracy.py "
                             + shlex.join(argv if argv is not None else sys.argv[1:]),
                             config, seed=0)
    (out / "results.json").write_text(json.dumps({"rows": rows, "manifest": man}, indent=2)
                                      + "\n")
    manifest_mod.write(out / "manifest.json", man)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
