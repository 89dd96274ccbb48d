"""``autoflow bench``: replay one workload under several policies and compare them."""

from __future__ import annotations

import importlib
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import jsonsafe
from . import manifest as manifest_mod
from .cluster import ClusterSpec, load_cluster
from .errors import AutoflowError, ConfigError, Interrupted
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
# present when the workload has workflows (``autoflow.metrics``): averaged over the seeds
# that have a value; ``workflows`` and ``serving_stages`` come from the first seed, and
# ``stage_wait`` is averaged stage by stage
WORKFLOW_AVERAGED = ("avg_wct", "p50_wct", "p99_wct", "avg_stage_wait", "p99_stage_wait",
                     "serving_slo_violations", "dropped_workflows")
WORKFLOW_FIRST = ("workflows", "serving_stages")


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


def check_policy(spec: str) -> None:
    """Everything about one ``--policies`` entry that can be checked before any run: the
    name, argument and placer (``parse_policy``); a heuristic is built once and dropped;
    a learned policy's module is imported (its extra is installed); ``rl:PATH`` must be a
    readable model file that loads (``check_model_file``, then ``load_model``: the safe
    format, or a pickle only if trusted; loads are cached). A plugin is
    checked by name only."""
    from .policies import LAZY_POLICIES, POLICIES, POLICY_FACTORIES, make_policy

    name, arg, _ = parse_policy(spec)
    lazy = LAZY_POLICIES.get(name)
    if lazy is not None:
        module = lazy.target.partition(":")[0]
        try:
            importlib.import_module(module)
        except ImportError as e:
            need = f" (pip install 'autoflow[{lazy.extra}]')" if lazy.extra else ""
            raise ConfigError(f"policy {name} needs the {lazy.extra or 'missing'} extra"
                              f"{need}: {e}") from e
        if name == "rl":
            from .agents.rl_policy import DEFAULT_MODEL, load_model

            if arg:
                check_model_file(arg, f"policy {spec.strip()}")
            try:
                load_model(arg or str(DEFAULT_MODEL))  # its format, hash and trust (cached)
            except AutoflowError as e:
                raise ConfigError(f"policy {spec.strip()}: {e}") from e
    elif name in POLICIES or name in POLICY_FACTORIES:
        make_policy(spec)  # cheap: catches an argument given to a policy that takes none


def check_model_file(path: str, what: str = "model") -> Path:
    """A model file exists, is a file and can be read. (Loading it, which checks its
    format and unpickles nothing untrusted, is ``rl_policy.load_model``'s.)"""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{what}: model {path}: file not found (train one with "
                          "`autoflow train`)")
    if p.is_dir():
        raise ConfigError(f"{what}: model {path}: is a folder, expected a model file "
                          "(.json, .npz or .zip)")
    try:
        with p.open("rb") as f:
            f.read(4)
        if p.suffix == ".zip":
            with zipfile.ZipFile(p) as z:
                z.namelist()
    except zipfile.BadZipFile:
        raise ConfigError(f"{what}: model {path}: not a model file (not a zip archive, "
                          "which is what `autoflow train` writes as .zip)") from None
    except OSError as e:
        raise ConfigError(f"{what}: model {path}: cannot be read: {e.strerror or e}") from None
    return p


def check_policies(specs: list[str]) -> list[str]:
    """The policy names of ``--policies``, each checked (``check_policy``) before any run;
    fifo is added first if missing (ratios are to fifo)."""
    names = [p.strip() for p in specs if p.strip()]
    if not names:
        raise ConfigError("--policies names no policy")
    for n in names:
        check_policy(n)
    if BASELINE not in names:
        names.insert(0, BASELINE)
    return names


def run_bench(cfg: BenchConfig, console: Console | None = None, command: str = "") -> dict:
    """Runs every policy on every seed and writes results.json, manifest.json and
    jct_cdf.png. Every policy, model file and setting is checked first. If a run fails
    or is interrupted (Ctrl-C), the runs that finished are still written (results.json
    with ``"partial": true``, the manifest's ``status`` ``failed`` or ``interrupted``) and
    :class:`~autoflow.errors.AutoflowError` (or :class:`~autoflow.errors.Interrupted`)
    says what was kept."""
    console = console or Console(stderr=True)
    if cfg.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {cfg.seeds}")
    names = check_policies(cfg.policies)  # before any simulation
    out = check_output_dir(cfg.out)

    # the trace, the cluster and the load of the first seed are read before any output,
    # so that a bad input ends with its one-line error alone
    first = prepare_fit(cfg.trace, cfg.cluster, cfg.load, 0, cfg.skip_bad_rows)
    per_seed: dict[str, list[dict]] = {n: [] for n in names}
    jcts: dict[str, np.ndarray] = {}
    setups = []
    current = ("", 0)
    stopped: BaseException | None = None
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task("simulating", total=len(names) * cfg.seeds)
            for seed in range(cfg.seeds):
                current = ("(the trace and cluster)", seed)
                fit = first if seed == 0 else prepare_fit(cfg.trace, cfg.cluster, cfg.load,
                                                          seed, cfg.skip_bad_rows)
                workload, spec = fit.workload, fit.spec
                setups.append({"seed": seed, "jobs": len(workload),
                               "cluster": spec.describe(), **fit.to_dict(),
                               "import": workload.summary.to_dict()})
                for name in names:
                    current = (name, seed)
                    progress.update(task, description=f"{name} (seed {seed})")
                    ev = evaluate(name, workload, spec, cfg.sim, seed=seed)
                    per_seed[name].append(ev.metrics)
                    if seed == 0:  # the jobs that ran (a dropped stage has no JCT)
                        jcts[name] = np.array([js.finish - js.submit for js in ev.result.jobs
                                               if js.first_start is not None], dtype=float)
                    progress.advance(task)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - saved, then raised again
        stopped = e

    policies = _aggregate(names, per_seed, cfg.seeds)
    finished = sum(len(r) for r in per_seed.values())
    status = (manifest_mod.COMPLETE if stopped is None else manifest_mod.INTERRUPTED
              if isinstance(stopped, KeyboardInterrupt) else manifest_mod.FAILED)
    config = {"trace": cfg.trace, "cluster": cfg.cluster or DEFAULT_CLUSTER, "load": cfg.load,
              "policies": names, "seeds": cfg.seeds, "sim": asdict(cfg.sim),
              "setups": setups}
    if stopped is not None:
        _stop(stopped, out, status, finished, len(names) * cfg.seeds, current, policies,
              per_seed, config, command)
    man = manifest_mod.build(command or "autoflow bench", config, seed=0)
    results = {"policies": policies, "manifest": man}
    jsonsafe.write(out / "results.json", results)
    manifest_mod.write(out / "manifest.json", man)
    s0 = setups[0]
    title = (f"{cfg.trace} on {s0['cluster']['name']} ({s0['cluster']['gpus']} GPUs, "
             f"offered load {s0['offered_load']:.2f}{_time_note(s0)})")
    jct_cdf({_label(n, policies[n]): v for n, v in jcts.items()}, out / "jct_cdf.png", title)
    return results


def _aggregate(names: list[str], per_seed: dict[str, list[dict]], seeds: int) -> dict:
    """Each policy's metrics over the seeds it finished (all of them, unless the bench
    stopped part-way); ``avg_jct_vs_fifo`` where fifo finished."""
    policies = {}
    for name in names:
        runs = per_seed[name]
        if not runs:
            continue
        agg = {k: float(np.mean([r[k] for r in runs])) for k in AVERAGED}
        agg.update(jobs=runs[0]["jobs"], inference_jobs=runs[0]["inference_jobs"],
                   oracle=runs[0]["oracle"], seeds=len(runs))
        _aggregate_workflows(agg, runs)
        if "guard" in runs[0]:  # learned policies: decisions and guard fallbacks
            agg["guard"] = {k: sum(r["guard"][k] for r in runs) for k in runs[0]["guard"]}
        if seeds > 1:
            agg["per_seed"] = runs
        policies[name] = agg
    base = policies.get(BASELINE)
    for agg in policies.values():
        agg["avg_jct_vs_fifo"] = (agg["avg_jct"] / base["avg_jct"]
                                  if base and base["avg_jct"] else None)
    return policies


def _finite_mean(values) -> float:
    """The mean of the values that are numbers (a metric over no jobs is NaN, or None
    once read back from JSON); NaN if none is."""
    xs = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(xs)) if xs else float("nan")


def _aggregate_workflows(agg: dict, runs: list[dict]) -> None:
    """The workflow metrics of ``runs`` (when the workload has workflows) and
    ``dropped_jobs`` (when any run has it: a missing one is 0) into ``agg``."""
    if any("dropped_jobs" in r for r in runs):
        agg["dropped_jobs"] = float(np.mean([r.get("dropped_jobs", 0) for r in runs]))
    have = [r for r in runs if "workflows" in r]
    if not have:
        return
    for k in WORKFLOW_FIRST:
        agg[k] = have[0][k]
    for k in WORKFLOW_AVERAGED:
        agg[k] = _finite_mean(r[k] for r in have)
    names = sorted({n for r in have for n in r["stage_wait"]})
    agg["stage_wait"] = {n: _finite_mean(r["stage_wait"][n] for r in have
                                         if n in r["stage_wait"]) for n in names}


def _stop(stopped: BaseException, out: Path, status: str, finished: int, total: int,
          current: tuple[str, int], policies: dict, per_seed: dict, config: dict,
          command: str) -> None:
    """Saves the runs that finished (if any) as partial results, then raises: the bench
    failed (``AutoflowError``) or was interrupted (``Interrupted``), saying what was kept."""
    name, seed = current
    why = ("interrupted" if status == manifest_mod.INTERRUPTED
           else f"{name} (seed {seed}) failed: {failure_reason(stopped)}")
    results = None
    if finished:
        man = manifest_mod.build(command or "autoflow bench", config, seed=0, status=status)
        results = {"policies": policies, "manifest": man, "partial": True, "status": status,
                   "stopped": {"policy": name, "seed": seed, "reason": why},
                   "finished_runs": [{"policy": n, "seeds": len(r)}
                                     for n, r in per_seed.items() if r]}
    keep_partial(stopped, out, status, f"{name} (seed {seed})", why, results,
                 f"the {finished} of {total} runs that finished", "run")


def keep_partial(stopped: BaseException, out: Path, status: str, where: str, why: str,
                 results: dict | None, what: str, unit: str) -> None:
    """Writes ``results`` (partial; ``None``: nothing had finished) and its manifest, then
    raises: ``Interrupted`` (Ctrl-C) or ``AutoflowError`` saying ``why`` and what was kept.
    Shared by ``bench`` and ``run``."""
    if results is not None:
        jsonsafe.write(out / "results.json", results)
        manifest_mod.write(out / "manifest.json", results["manifest"])
        kept = (f"wrote {what} to {out / 'results.json'} (marked partial) and "
                f"{out / 'manifest.json'}")
    else:
        kept = f"no {unit} had finished; nothing written"
    if status == manifest_mod.INTERRUPTED:
        raise Interrupted(f"during {where}; {kept}") from None
    raise AutoflowError(f"{why}; {kept}") from stopped


def failure_reason(e: BaseException) -> str:
    if isinstance(e, AutoflowError):
        return str(e)
    if isinstance(e, OSError):
        return f"{e.filename or ''}: {e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def _time_note(setup: dict) -> str:
    f = setup.get("time_scale", 1.0)
    return f", arrival times x{f:.3g}" if f != 1.0 else ""


def _label(name: str, agg: dict) -> str:
    return f"{name} (oracle)" if agg.get("oracle") else name


def _fmt_s(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "-"  # a figure over no jobs
    if x >= 86400 * 2:
        return f"{x / 86400:.1f}d"
    if x >= 7200:
        return f"{x / 3600:.1f}h"
    return f"{x:.0f}s"


WORKFLOW_COLUMNS = ("avg WCT", "p99 WCT", "avg stage wait")  # only when there are workflows


def table(results: dict) -> Table:
    """The policies side by side; with workflows, also avg and p99 workflow completion
    time and the average stage wait (from eligibility to start), and a caption line for
    each policy that dropped jobs."""
    setups = results["manifest"]["config"]["setups"]
    s0 = setups[0]
    t = Table(title=f"{results['manifest']['config']['trace']} — {s0['jobs']} jobs on "
                    f"{s0['cluster']['name']} ({s0['cluster']['gpus']} GPUs), offered load "
                    f"{s0['offered_load']:.2f}{_time_note(s0)}", title_justify="left")
    flows = has_workflows(results)
    for col in ("policy", "avg JCT", "× fifo", "p50 JCT", "p99 JCT", "avg wait",
                *(WORKFLOW_COLUMNS if flows else ()), "bnd slowdown",
                "makespan", "GPU alloc", "frag", "SLO miss", "preempt", "sim s"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, m in results["policies"].items():
        ratio = m.get("avg_jct_vs_fifo")
        wf = ((_fmt_s(m.get("avg_wct")), _fmt_s(m.get("p99_wct")),
               _fmt_s(m.get("avg_stage_wait"))) if flows else ())
        t.add_row(_label(name, m), _fmt_s(m["avg_jct"]), f"{ratio:.2f}" if ratio else "-",
                  _fmt_s(m["p50_jct"]), _fmt_s(m["p99_jct"]), _fmt_s(m["avg_wait"]), *wf,
                  f"{m['avg_bounded_slowdown']:.2f}", _fmt_s(m["makespan"]),
                  f"{m['gpu_allocation']:.1%}", f"{m['fragmentation']:.1%}",
                  f"{m['slo_violations']:.0f}/{m['inference_jobs']}", f"{m['preemptions']:.0f}",
                  f"{m['wall_s']:.2f}")
    notes = [f"{n}: {m['guard']['invalid'] + m['guard']['idle_wait']} guard fallbacks in "
             f"{m['guard']['decisions']:,} decisions"
             for n, m in results["policies"].items() if "guard" in m]
    notes += [f"{n}: {m['dropped_jobs']:g} jobs dropped (a job they depend on did not "
              "succeed)" for n, m in results["policies"].items() if m.get("dropped_jobs")]
    if notes:
        t.caption = "; ".join(notes)
    return t


def has_workflows(results: dict) -> bool:
    """Whether the bench's workload had workflows (its results carry workflow metrics)."""
    return any("workflows" in m for m in results["policies"].values())


def stage_table(results: dict) -> Table | None:
    """Each workflow stage's average wait from eligibility to start (``stage_wait``), a
    row per stage and a column per policy (pipelines have many stages, runs few
    policies), and the serving stages' SLO misses; None without workflows."""
    if not has_workflows(results):
        return None
    policies = {n: m for n, m in results["policies"].items() if "workflows" in m}
    stages = sorted({s for m in policies.values() for s in m["stage_wait"]})
    first = next(iter(policies.values()))
    t = Table(title=f"{first['workflows']} workflows: average wait of each stage from "
                    "eligibility (its parents done) to start", title_justify="left")
    t.add_column("stage", justify="left")
    for name, m in policies.items():
        t.add_column(_label(name, m), justify="right")
    for st in stages:
        t.add_row(st, *(_fmt_s(m["stage_wait"].get(st)) for m in policies.values()))
    t.add_row("serving SLO misses", *(f"{m['serving_slo_violations']:.0f}/"
                                      f"{m['serving_stages']}" for m in policies.values()))
    return t
