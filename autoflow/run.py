"""``autoflow run``: replay a workload under several policies on a backend — the
simulator (``sim``) or real processes on a local Ray cluster shaped like the cluster
(``ray``) — and, for a real run, say how closely it followed the simulated one.

Writes ``results.json`` with ``bench``'s keys (``policies``: the metrics of each policy,
``manifest``) plus, for ``--backend ray``, ``fidelity``: per policy, the same workload
simulated by the core with the same policy, ``jct_correlation`` (per job, real vs
simulated), ``avg_jct_ratio`` (real / simulated), the scheduling overhead per decision,
launch delays and work lost (``autoflow.execution.fidelity.compare``). Also
``manifest.json``, ``jobs.csv`` (per job: real and simulated JCT), ``jct_cdf.png`` and,
for a real run, ``jct_real_vs_sim.png``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import atomic, jsonsafe
from . import manifest as manifest_mod
from .bench import (
    BASELINE,
    DEFAULT_CLUSTER,
    check_policy,
    failure_reason,
    keep_partial,
    prepare_fit,
)
from .errors import ConfigError
from .evaluate import evaluate
from .limits import check_output_dir
from .plots import jct_cdf, real_vs_simulated
from .policies import make_policy
from .sim.simulator import SimConfig

BACKENDS = ("sim", "ray")
NEEDS_RAY = "--backend ray needs the ray extra: pip install 'autoflow[ray]'"


@dataclass
class RunConfig:
    trace: str
    policies: list[str]
    out: str
    backend: str = "sim"
    cluster: str | None = None
    load: float | None = None
    seed: int = 0
    time_scale: float = 0.001  # wall seconds per trace second (ray)
    skip_bad_rows: bool = False
    sim: SimConfig = field(default_factory=SimConfig)


def check(cfg: RunConfig) -> list[str]:
    """Everything that can be checked before any run; returns the policy names."""
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got "
                          f"{cfg.backend!r}")
    names = [p.strip() for p in cfg.policies if p.strip()]
    if not names:
        raise ConfigError("--policies names no policy")
    if len(set(names)) < len(names):
        raise ConfigError(f"--policies names a policy twice: {','.join(names)}")
    for n in names:
        check_policy(n)
    if cfg.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"{NEEDS_RAY} ({e})") from None
    return names


def run(cfg: RunConfig, console: Console | None = None, command: str = "") -> dict:
    console = console or Console(stderr=True)
    names = check(cfg)
    out = check_output_dir(cfg.out)
    fit = prepare_fit(cfg.trace, cfg.cluster, cfg.load, cfg.seed, cfg.skip_bad_rows)
    workload, spec = fit.workload, fit.spec
    policies: dict[str, dict] = {}
    fidelity: dict[str, dict] = {}
    per_job: dict[str, dict] = {}  # policy -> {"real": [...], "sim": [...]} in job order
    config = {"trace": cfg.trace, "cluster": cfg.cluster or DEFAULT_CLUSTER,
              "load": cfg.load, "policies": names, "backend": cfg.backend,
              "seed": cfg.seed, "sim": asdict(cfg.sim),
              "setup": {"jobs": len(workload), "cluster": spec.describe(), **fit.to_dict()}}
    if cfg.backend == "ray":
        config["time_scale"] = cfg.time_scale
    current = [names[0]]  # the policy running now (set by the loops)
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} jobs"), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            if cfg.backend == "sim":
                for name in names:
                    current[0] = name
                    task = progress.add_task(f"{name} (simulated)", total=len(workload))
                    ev = evaluate(name, workload, spec, cfg.sim, seed=cfg.seed)
                    policies[name] = ev.metrics
                    per_job[name] = {"sim": [js.finish - js.submit for js in ev.result.jobs]}
                    progress.update(task, completed=len(workload))
            else:
                _run_ray(cfg, names, workload, spec, progress, policies, fidelity, per_job,
                         current)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - saved, then raised again
        _stopped(e, out, cfg, names, policies, fidelity, config, command, current[0])
    _ratios(policies)
    man = manifest_mod.build(command or "autoflow run", config, seed=cfg.seed)
    results = {"policies": policies, "manifest": man}
    if cfg.backend == "ray":
        results["fidelity"] = fidelity
    _write(out, results, man, workload, per_job, cfg, spec)
    return results


def _run_ray(cfg, names, workload, spec, progress, policies, fidelity, per_job,
             current: list[str]) -> None:
    from .execution.fidelity import compare, real_metrics
    from .execution.local_ray import LocalRayCluster
    from .execution.replay import replay_on_ray

    start = progress.add_task(f"starting a local Ray cluster ({len(spec.nodes)} nodes)",
                              total=None)
    with LocalRayCluster(spec) as rc:
        progress.remove_task(start)
        for name in names:
            current[0] = name
            task = progress.add_task(f"{name} on Ray (x{cfg.time_scale:g})",
                                     total=len(workload))
            sim = evaluate(name, workload, spec, cfg.sim, seed=cfg.seed).result
            pol = make_policy(name)
            r = replay_on_ray(workload, spec, pol, cfg.time_scale,
                              restart_overhead_s=cfg.sim.restart_overhead_s, cluster=rc,
                              checkpoint_interval_s=cfg.sim.checkpoint_interval_s,
                              progress=lambda done, t=task: progress.update(t, completed=done))
            policies[name] = real_metrics(r, spec, pol)
            fidelity[name] = compare(r, sim, cfg.time_scale)
            by_id = {js.job.job_id: js for js in sim.jobs}
            per_job[name] = {"real": [js.finish - js.submit for js in r.jobs],
                             "sim": [by_id[js.job.job_id].finish - by_id[js.job.job_id].submit
                                     for js in r.jobs]}


def _ratios(policies: dict) -> None:
    base = policies.get(BASELINE)
    for m in policies.values():
        m["avg_jct_vs_fifo"] = (m["avg_jct"] / base["avg_jct"]
                                if base and base["avg_jct"] else None)


def _write(out: Path, results, man, workload, per_job, cfg, spec) -> None:
    jsonsafe.write(out / "results.json", results)
    manifest_mod.write(out / "manifest.json", man)
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = [(n, k) for n in per_job for k in ("real", "sim") if k in per_job[n]]
    w.writerow(["job_id"] + [f"{n}_{'real' if k == 'real' else 'simulated'}_jct_s"
                             for n, k in cols])
    for i, j in enumerate(workload.jobs):
        w.writerow([j.job_id] + [f"{per_job[n][k][i]:.3f}" for n, k in cols])
    atomic.write_text(out / "jobs.csv", buf.getvalue())
    what = "real" if cfg.backend == "ray" else "sim"
    title = f"{cfg.trace} on {spec.name} ({sum(n.gpus for n in spec.nodes)} GPUs)"
    jct_cdf({n: per_job[n][what] for n in per_job}, out / "jct_cdf.png",
            title + (f", real processes on Ray x{cfg.time_scale:g}" if what == "real" else ""))
    if cfg.backend == "ray":
        real_vs_simulated({n: (per_job[n]["sim"], per_job[n]["real"]) for n in per_job},
                          out / "jct_real_vs_sim.png", title)


def _stopped(e, out, cfg, names, policies, fidelity, config, command, current) -> None:
    status = (manifest_mod.INTERRUPTED if isinstance(e, KeyboardInterrupt)
              else manifest_mod.FAILED)
    why = ("interrupted" if status == manifest_mod.INTERRUPTED
           else f"{current} failed: {failure_reason(e)}")
    results = None
    if policies:
        _ratios(policies)
        man = manifest_mod.build(command or "autoflow run", config, seed=cfg.seed,
                                 status=status)
        results = {"policies": policies, "manifest": man, "partial": True, "status": status,
                   "stopped": {"policy": current, "reason": why}}
        if cfg.backend == "ray":
            results["fidelity"] = fidelity
    keep_partial(e, out, status, current, why, results,
                 f"the {len(policies)} of {len(names)} policies that finished", "policy")


def table(results: dict) -> Table:
    cfg = results["manifest"]["config"]
    real = cfg["backend"] == "ray"
    t = Table(title=f"{cfg['trace']} — {cfg['setup']['jobs']} jobs on "
                    f"{cfg['setup']['cluster']['name']}, backend {cfg['backend']}"
                    + (f" (x{cfg['time_scale']:g})" if real else ""))
    cols = ["policy", "avg JCT (h)", "× fifo", "p99 JCT (h)", "preempt"]
    if real:
        cols += ["JCT corr", "avg real/sim", "ms/decision", "launch p50 (ms)", "wall s"]
    for c in cols:
        t.add_column(c, justify="left" if c == "policy" else "right")
    for name, m in results["policies"].items():
        ratio = m.get("avg_jct_vs_fifo")
        row = [name, f"{m['avg_jct'] / 3600:.2f}", "-" if ratio is None else f"{ratio:.2f}",
               f"{m['p99_jct'] / 3600:.2f}", str(m["preemptions"])]
        if real:
            f = results["fidelity"][name]
            row += [_f(f["jct_correlation"], 3), _f(f["avg_jct_ratio"], 3),
                    _f(f["overhead_per_decision_ms"], 2), _f(f["launch_delay_wall_ms"]["p50"], 1),
                    f"{f['wall_s']:.0f}"]
        t.add_row(*row)
    return t


def _f(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
