"""``autoflow bench``: replay one workload under several policies and compare them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import jsonsafe
from . import manifest as manifest_mod
from .cluster import ClusterSpec, load_cluster
from .errors import ConfigError
from .evaluate import evaluate, fit_to
from .limits import check_output_dir
from .load import LoadFit
from .plots import jct_cdf
from .policies import parse_policy
from .sim.simulator import SimConfig
from .traces.registry import load_workload
from .workload import Workload

BASELINE = "fifo"
DEFAULT_CLUSTER = "philly-64"
# metrics averaged over seeds; the rest are summed or taken from the first seed
AVERAGED = ("avg_jct", "p50_jct", "p99_jct", "avg_wait", "p99_wait", "avg_bounded_slowdown",
            "makespan", "gpu_allocation", "fragmentation", "slo_violations", "preemptions",
            "node_failures", "wall_s")


@dataclass
class BenchConfig:
    trace: str
    policies: list[str]
    out: str
    cluster: str | None = None
    load: float | None = None
    seeds: int = 1
    skip_bad_rows: bool = False
    sim: SimConfig = field(default_factory=SimConfig)


def prepare_fit(trace: str, cluster: str | None, load: float | None, seed: int,
                skip_bad_rows: bool = False) -> LoadFit:
    """The workload (shifted to start at 0) and the cluster, fitted to ``load`` when one is
    given (``autoflow.load.fit_load``: resized, and time-scaled where resizing falls short)."""
    workload = load_workload(trace, skip_bad_rows=skip_bad_rows, seed=seed).shifted()
    return fit_to(load_cluster(cluster or DEFAULT_CLUSTER), workload, load)


def prepare(trace: str, cluster: str | None, load: float | None, seed: int,
            skip_bad_rows: bool = False) -> tuple[Workload, ClusterSpec]:
    fit = prepare_fit(trace, cluster, load, seed, skip_bad_rows)
    return fit.workload, fit.spec


def run_bench(cfg: BenchConfig, console: Console | None = None, command: str = "") -> dict:
    console = console or Console(stderr=True)
    if cfg.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {cfg.seeds}")
    names = [p.strip() for p in cfg.policies if p.strip()]
    if not names:
        raise ConfigError("--policies names no policy")
    for n in names:
        parse_policy(n)  # fail fast on a typo, before any simulation
    if BASELINE not in names:
        names.insert(0, BASELINE)  # ratios are always to fifo
    out = check_output_dir(cfg.out)

    # the trace, the cluster and the load of the first seed are read before any output,
    # so that a bad input ends with its one-line error alone
    first = prepare_fit(cfg.trace, cfg.cluster, cfg.load, 0, cfg.skip_bad_rows)
    per_seed: dict[str, list[dict]] = {n: [] for n in names}
    jcts: dict[str, np.ndarray] = {}
    setups = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("simulating", total=len(names) * cfg.seeds)
        for seed in range(cfg.seeds):
            fit = first if seed == 0 else prepare_fit(cfg.trace, cfg.cluster, cfg.load, seed,
                                                      cfg.skip_bad_rows)
            workload, spec = fit.workload, fit.spec
            setups.append({"seed": seed, "jobs": len(workload), "cluster": spec.describe(),
                           **fit.to_dict(), "import": workload.summary.to_dict()})
            for name in names:
                progress.update(task, description=f"{name} (seed {seed})")
                ev = evaluate(name, workload, spec, cfg.sim, seed=seed)
                per_seed[name].append(ev.metrics)
                if seed == 0:
                    jcts[name] = ev.jcts
                progress.advance(task)

    policies = {}
    for name in names:
        runs = per_seed[name]
        agg = {k: float(np.mean([r[k] for r in runs])) for k in AVERAGED}
        agg.update(jobs=runs[0]["jobs"], inference_jobs=runs[0]["inference_jobs"],
                   oracle=runs[0]["oracle"], seeds=len(runs))
        if "guard" in runs[0]:  # learned policies: decisions and guard fallbacks
            agg["guard"] = {k: sum(r["guard"][k] for r in runs) for k in runs[0]["guard"]}
        if cfg.seeds > 1:
            agg["per_seed"] = runs
        policies[name] = agg
    base = policies[BASELINE]
    for agg in policies.values():
        agg["avg_jct_vs_fifo"] = agg["avg_jct"] / base["avg_jct"] if base["avg_jct"] else None

    config = {"trace": cfg.trace, "cluster": cfg.cluster or DEFAULT_CLUSTER, "load": cfg.load,
              "policies": names, "seeds": cfg.seeds, "sim": asdict(cfg.sim),
              "setups": setups}
    man = manifest_mod.build(command or "autoflow bench", config, seed=0)
    results = {"policies": policies, "manifest": man}
    jsonsafe.write(out / "results.json", results)
    manifest_mod.write(out / "manifest.json", man)
    s0 = setups[0]
    title = (f"{cfg.trace} on {s0['cluster']['name']} ({s0['cluster']['gpus']} GPUs, "
             f"offered load {s0['offered_load']:.2f}{_time_note(s0)})")
    jct_cdf({_label(n, policies[n]): v for n, v in jcts.items()}, out / "jct_cdf.png", title)
    return results


def _time_note(setup: dict) -> str:
    f = setup.get("time_scale", 1.0)
    return f", arrival times x{f:.3g}" if f != 1.0 else ""


def _label(name: str, agg: dict) -> str:
    return f"{name} (oracle)" if agg.get("oracle") else name


def _fmt_s(x: float) -> str:
    if x >= 86400 * 2:
        return f"{x / 86400:.1f}d"
    if x >= 7200:
        return f"{x / 3600:.1f}h"
    return f"{x:.0f}s"


def table(results: dict) -> Table:
    setups = results["manifest"]["config"]["setups"]
    s0 = setups[0]
    t = Table(title=f"{results['manifest']['config']['trace']} — {s0['jobs']} jobs on "
                    f"{s0['cluster']['name']} ({s0['cluster']['gpus']} GPUs), offered load "
                    f"{s0['offered_load']:.2f}{_time_note(s0)}", title_justify="left")
    for col in ("policy", "avg JCT", "× fifo", "p50 JCT", "p99 JCT", "avg wait", "bnd slowdown",
                "makespan", "GPU alloc", "frag", "SLO miss", "preempt", "sim s"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, m in results["policies"].items():
        ratio = m.get("avg_jct_vs_fifo")
        t.add_row(_label(name, m), _fmt_s(m["avg_jct"]), f"{ratio:.2f}" if ratio else "-",
                  _fmt_s(m["p50_jct"]), _fmt_s(m["p99_jct"]), _fmt_s(m["avg_wait"]),
                  f"{m['avg_bounded_slowdown']:.2f}", _fmt_s(m["makespan"]),
                  f"{m['gpu_allocation']:.1%}", f"{m['fragmentation']:.1%}",
                  f"{m['slo_violations']:.0f}/{m['inference_jobs']}", f"{m['preemptions']:.0f}",
                  f"{m['wall_s']:.2f}")
    guards = [f"{n}: {m['guard']['invalid'] + m['guard']['idle_wait']} guard fallbacks in "
              f"{m['guard']['decisions']:,} decisions"
              for n, m in results["policies"].items() if "guard" in m]
    if guards:
        t.caption = "; ".join(guards)
    return t
