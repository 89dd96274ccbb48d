"""The ``autoflow`` command line."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import AutoflowError
from .limits import FLAG_RANGES

app = typer.Typer(help="autoflow: a self-optimizing scheduler for GPU clusters — simulate, "
                       "benchmark and compare scheduling policies on real traces.",
                  no_args_is_help=True, add_completion=False)
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def _range(flag: str) -> str:
    """The valid range of a flag, for its --help (docs/hardening.md lists them all)."""
    return f" Valid: {FLAG_RANGES[flag].describe()}."


def fail(e: Exception) -> None:
    # the message is printed as written: no markup ("[...]") or emoji (":name:") in it
    err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True,
              emoji=False)
    raise typer.Exit(2)


def interrupted(e: KeyboardInterrupt) -> None:
    """Ctrl-C: one line saying what was kept (``Interrupted``'s message), exit code 130."""
    msg = str(e) or "stopped before anything that finished was saved"
    err.print(f"[yellow]interrupted:[/yellow] {escape(msg)}",
              highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(130)


TRUST_HELP = ("Unpickle this file even though autoflow did not record writing it (an SB3 "
              "zip, an SDV generator): only for files whose author you trust; a pickle can "
              "run code. Repeatable.")


def _trust(paths: list[Path] | None) -> None:
    from . import trust

    trust.allow_all(paths)


def _mount_traces() -> None:
    try:
        from .traces.cli import app as traces_app
    except ImportError:  # pragma: no cover - the traces CLI ships with the package
        return
    app.add_typer(traces_app, name="traces", help="Inspect, convert and download traces.")


_mount_traces()


def _mount_generate() -> None:
    from .generators.cli import app as generate_app

    app.add_typer(generate_app, name="generate", help="Fit workload generators, sample "
                  "synthetic workloads, report their fidelity.")


_mount_generate()


def _mount_predictor() -> None:
    from .predict.cli import app as predictor_app

    app.add_typer(predictor_app, name="predictor", help="Fit and evaluate duration "
                  "predictors (quantiles of a job's remaining run time).")


_mount_predictor()


def _candidates(text: str | None) -> tuple[str, ...] | None:
    """``--candidates``: heuristics (known names, no learned policy), at least two."""
    if text is None:
        return None
    from .policies import parse_policy

    names = tuple(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
    if len(names) < 2:
        raise AutoflowError(f"--candidates: name at least two heuristics, got {text!r}")
    for c in names:
        if c in ("rl", "las-expert") or c.startswith("rl:") or "+" in c:
            raise AutoflowError(f"--candidates: {c!r} must be a heuristic without a placer")
        parse_policy(c)  # an unknown name fails here
    return names


def _mount_workflows() -> None:
    from .workflow_cli import app as workflows_app

    app.add_typer(workflows_app, name="workflows", help="Workflow templates (pipelines of "
                  "dependent jobs): check one, expand it into runs; submit a run to a "
                  "running server, show it, cancel it.")


_mount_workflows()


def _mount_loop() -> None:
    from .loop.cli import loop

    app.command("loop")(loop)


_mount_loop()


def _mount_pretrain() -> None:
    @app.command("pretrain")
    def pretrain_cmd(
        workloads: str = typer.Option(..., help="Comma-separated trace SOURCES (FORMAT:PATH "
                                      "or builtin:NAME): every job's decision-time row, "
                                      "censored and unknown-duration jobs included; no "
                                      "job's own duration is used."),
        out_dir: Path = typer.Option(..., "--out", help="Encoder folder to write "
                                     "(encoder.pt, encoder.json, manifest.json)."),
        objective: str = typer.Option("vime", help="vime (masked-feature reconstruction: "
                                      "what the shipped encoder-v2 used, the better of the "
                                      "two on held-out traces) or scarf "
                                      "(corruption-contrastive)."),
        bins: int = typer.Option(16, help="Piecewise-linear encoding of each feature in this "
                                 "many bins between quantiles of the rows (0: standardized "
                                 "features, as encoder-v1); at most 64."),
        epochs: int = typer.Option(10, help="Passes over the rows." + _range("--epochs")),
        seed: int = typer.Option(0, help="Seed of the draws and the training."
                                 + _range("--seed")),
        max_rows: int = typer.Option(0, help="Cap on pretraining rows, a seeded subset "
                                     "(0: all)."),
    ) -> None:
        """Pretrain the duration predictor's encoder on job rows, without durations."""
        from .limits import check_flags, check_output_dir
        from .predict import pretrain as P

        try:
            check_flags(epochs=epochs, seed=seed)
            if epochs < 1:
                raise AutoflowError("--epochs must be at least 1 to pretrain")
            if max_rows < 0 or 0 < max_rows < 2:
                raise AutoflowError(f"--max-rows must be 0 (all) or at least 2, got {max_rows}")
            if not 0 <= bins <= 64:
                raise AutoflowError(f"--bins must be in [0, 64], got {bins}")
            if objective not in P.OBJECTIVES:
                raise AutoflowError(f"--objective must be one of {', '.join(P.OBJECTIVES)}, "
                                    f"got {objective!r}")
            sources = [s.strip() for s in workloads.split(",") if s.strip()]
            if not sources:
                raise AutoflowError("--workloads: name at least one trace SOURCE")
            check_output_dir(out_dir)

            def progress(epoch: int, total: int, loss: float) -> None:
                err.print(f"epoch {epoch}/{total}: {objective} loss {loss:.4f}",
                          highlight=False)

            rec = P.pretrain_sources(sources, out_dir, objective=objective, epochs=epochs,
                                     seed=seed, max_rows=max_rows or None, progress=progress,
                                     params={"bins": bins},
                                     command="autoflow " + shlex.join(sys.argv[1:]))
        except KeyboardInterrupt:
            interrupted(KeyboardInterrupt("nothing was written"))
        except AutoflowError as e:
            fail(e)
        except OSError as e:
            fail(AutoflowError(f"{e.filename or ''}: {e.strerror or e}"))
        out.print(f"pretrained a {rec['objective']} encoder on {rec['rows']:,} rows of "
                  f"{len(rec['sources'])} source(s) -> {out_dir}", highlight=False)


_mount_pretrain()


def _mount_service() -> None:
    from .service.cli import register

    register(app, out, err, fail)


_mount_service()


@app.command()
def bench(
    trace: str = typer.Option(..., help="Workload source FORMAT:PATH, e.g. itp:cluster08.csv, "
                              "alibaba-openb:pods.csv, builtin:philly-mix."),
    policies: str = typer.Option("fifo,sjf,las,easy-backfill", help="Comma-separated policies, "
                                 "each NAME or NAME+PLACER (see `autoflow policies`)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for results.json, manifest.json "
                                 "and jct_cdf.png."),
    cluster: str = typer.Option(None, help="YAML file, built-in name or alibaba-openb:NODES.csv "
                                "(default philly-64)."),
    load: float = typer.Option(None, help="Target offered load RHO (GPU-time asked for over "
                               "capacity during the span: submit spread + mean duration; for a "
                               "batch, the 99th-percentile duration), reached within 3%: the cluster is resized keeping its node mix "
                               "(a heterogeneous one no smaller than keeps its GPU-type mix "
                               "within 10 points) and every job shape that runs on it runnable; "
                               "where whole nodes or that floor miss RHO by over 1%, the "
                               "arrival times are scaled too. Method, time-scale factor and "
                               "achieved load go to the manifest; an error if RHO cannot be "
                               "reached or would need over 100,000 GPUs."
                               + _range("--load")),
    seeds: int = typer.Option(1, help="Runs per policy with seeds 0..N-1 (built-in workloads and "
                              "failures vary with the seed); metrics are averaged."
                              + _range("--seeds")),
    restart_overhead: float = typer.Option(30.0, help="Seconds lost at every restart."
                                                      + _range("--restart-overhead")),
    checkpoint_interval: float = typer.Option(1800.0, help="Training checkpoint interval (s)."
                                                           + _range("--checkpoint-interval")),
    failure_rate: float = typer.Option(0.0, help="Node failures per node per day (0 = none)."
                                                 + _range("--failure-rate")),
    repair_time: float = typer.Option(3600.0, help="Seconds a failed node stays down."
                                                   + _range("--repair-time")),
    default_slo: float = typer.Option(60.0, help="Start-delay SLO (s) of inference jobs that "
                                      "carry none." + _range("--default-slo")),
    duration_prior: float = typer.Option(None, help="Duration (s) that non-oracle policies "
                                         "predict before any job has completed (default "
                                         "3600); afterwards predictions come from completed "
                                         "jobs only." + _range("--duration-prior")),
    skip_bad_rows: bool = typer.Option(False, help="Import the rest of a trace with bad rows, "
                                       "reporting how many were skipped and why."),
    trust_file: list[Path] = typer.Option(None, "--trust-file", metavar="PATH",
                                          help="An SB3 zip given as rl:PATH: " + TRUST_HELP),
) -> None:
    """Replay a workload under each policy; print a table with ratios to fifo and write
    results.json, manifest.json and jct_cdf.png."""
    from .bench import BenchConfig, check_policies, run_bench, stage_table, table
    from .limits import check_flags, check_output_dir

    try:  # every flag and policy (model files included) before any folder or run
        check_flags(load=load, seeds=seeds, restart_overhead=restart_overhead,
                    checkpoint_interval=checkpoint_interval, failure_rate=failure_rate,
                    repair_time=repair_time, default_slo=default_slo,
                    duration_prior=duration_prior)
        _trust(trust_file)  # before the models are checked: they load through it
        check_policies(policies.split(","))
        check_output_dir(out_dir)
    except AutoflowError as e:
        fail(e)
    except OSError as e:  # a model file that cannot be read
        fail(AutoflowError(f"{e.filename or ''}: {e.strerror or e}"))
    from .sim.simulator import SimConfig

    try:
        cfg = BenchConfig(trace=trace, policies=policies.split(","), out=str(out_dir),
                          cluster=cluster, load=load, seeds=seeds, skip_bad_rows=skip_bad_rows,
                          sim=SimConfig(restart_overhead_s=restart_overhead,
                                        checkpoint_interval_s=checkpoint_interval,
                                        failure_rate_per_node_day=failure_rate,
                                        repair_time_s=repair_time, default_slo_s=default_slo,
                                        duration_prior_s=duration_prior))
        results = run_bench(cfg, err, command="autoflow " + shlex.join(sys.argv[1:]))
    except KeyboardInterrupt as e:  # Interrupted: what finished was written
        interrupted(e)
    except AutoflowError as e:
        fail(e)
    except OSError as e:  # e.g. a disk that filled up while writing the results
        fail(AutoflowError(f"{e.filename or ''}: {e.strerror or e}"))
    out.print(table(results))
    stages = stage_table(results)  # pipelines of dependent jobs: each stage's wait
    if stages is not None:
        out.print(stages)
    out.print(f"wrote {out_dir}/results.json, {out_dir}/manifest.json, {out_dir}/jct_cdf.png")


@app.command("run")
def run_cmd(
    trace: str = typer.Option(..., help="Workload source FORMAT:PATH, e.g. "
                              "builtin:philly-mix-small:200, itp:cluster08.csv."),
    policies: str = typer.Option("fifo,las", help="Comma-separated policies, each NAME or "
                                 "NAME+PLACER (see `autoflow policies`); each is one run."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for results.json, manifest.json, "
                                 "jobs.csv, jct_cdf.png and (ray) jct_real_vs_sim.png."),
    backend: str = typer.Option("sim", help="sim: the simulator; ray: every job as real "
                                "processes on a local Ray cluster shaped like --cluster (one "
                                "Ray node per node, its GPUs as logical GPUs), pinned where "
                                "the policy placed it, and compared with the simulated run."),
    cluster: str = typer.Option(None, help="YAML file, built-in name or "
                                "alibaba-openb:NODES.csv (default philly-64)."),
    time_scale: float = typer.Option(0.001, help="ray: wall seconds per trace second "
                                     "(0.001: a trace hour runs 3.6 s)." + _range("--time-scale")),
    load: float = typer.Option(None, help="Target offered load, as for `autoflow bench`."
                               + _range("--load")),
    seed: int = typer.Option(0, help="Seed of built-in workloads.", min=0),
    restart_overhead: float = typer.Option(30.0, help="Seconds lost at every restart."
                                                      + _range("--restart-overhead")),
    checkpoint_interval: float = typer.Option(1800.0, help="Seconds between a training "
                                              "job's checkpoints (ray: each job writes its "
                                              "progress this often, in trace seconds)."
                                              + _range("--checkpoint-interval")),
    skip_bad_rows: bool = typer.Option(False, help="Import the rest of a trace with bad rows, "
                                       "reporting how many were skipped and why."),
    trust_file: list[Path] = typer.Option(None, "--trust-file", metavar="PATH",
                                          help="An SB3 zip given as rl:PATH: " + TRUST_HELP),
) -> None:
    """Replay a workload under each policy on a backend: the simulator, or real processes
    on Ray (then also how closely they followed the simulated run: per-job JCT correlation,
    average JCT real / simulated, overhead per decision)."""
    from .limits import check_flags
    from .run import RunConfig, check, run, table
    from .sim.simulator import SimConfig

    try:
        check_flags(time_scale=time_scale, load=load, restart_overhead=restart_overhead,
                    checkpoint_interval=checkpoint_interval)
        _trust(trust_file)
        cfg = RunConfig(trace=trace, policies=policies.split(","), out=str(out_dir),
                        backend=backend, cluster=cluster, load=load, seed=seed,
                        time_scale=time_scale, skip_bad_rows=skip_bad_rows,
                        sim=SimConfig(restart_overhead_s=restart_overhead,
                                      checkpoint_interval_s=checkpoint_interval))
        check(cfg)
        results = run(cfg, err, command="autoflow " + shlex.join(sys.argv[1:]))
    except KeyboardInterrupt as e:
        interrupted(e)
    except AutoflowError as e:
        fail(e)
    except OSError as e:
        fail(AutoflowError(f"{e.filename or ''}: {e.strerror or e}"))
    out.print(table(results))
    extra = ", jct_real_vs_sim.png" if backend == "ray" else ""
    out.print(f"wrote {out_dir}/results.json, manifest.json, jobs.csv, jct_cdf.png{extra}")


@app.command("policies")
def list_policies() -> None:
    """List the registered policies and placers."""
    from .placers import DEFAULT_PLACER, PLACERS
    from .policies import LAZY_POLICIES, POLICIES, POLICY_FACTORIES

    t = Table(title="policies (write NAME or NAME+PLACER)")
    t.add_column("name")
    t.add_column("oracle")
    t.add_column("preemptive")
    t.add_column("what it does")
    for name, cls in POLICIES.items():
        doc = (cls.__module__ and sys.modules[cls.__module__].__doc__ or "").strip()
        t.add_row(name, "yes" if cls.oracle else "", "yes" if cls.preemptive else "",
                  doc.split("\n")[0])
    for name, factory in POLICY_FACTORIES.items():
        doc = (factory.__doc__ or "").strip().split("\n")[0].replace("``", "")
        t.add_row(f"{name}[:ARG]", "", "", doc)
    for name, lazy in LAZY_POLICIES.items():  # listed without importing them
        extra = f" (needs the {lazy.extra} extra)" if lazy.extra else ""
        t.add_row(name, "", "yes", lazy.doc + extra)
    out.print(t)
    p = Table(title=f"placers (default {DEFAULT_PLACER})")
    p.add_column("name")
    p.add_column("what it does")
    for name, cls in PLACERS.items():
        doc = (sys.modules[cls.__module__].__doc__ or "").strip()
        p.add_row(name, doc.split("\n")[0])
    out.print(p)


@app.command("clusters")
def clusters(source: str = typer.Argument(None, help="Show one cluster: YAML file, built-in "
                                          "name or alibaba-openb:NODES.csv.")) -> None:
    """List the built-in clusters, or describe one cluster source."""
    from .cluster import builtin_names, load_cluster

    try:
        names = [source] if source else builtin_names()
        t = Table(title="clusters")
        for col in ("cluster", "nodes", "GPUs", "node mix (type x GPUs: count)"):
            t.add_column(col)
        for n in names:
            d = load_cluster(n).describe()
            t.add_row(d["name"], str(d["nodes"]), str(d["gpus"]),
                      ", ".join(f"{k}: {v}" for k, v in d["mix"].items()))
    except AutoflowError as e:
        fail(e)
    out.print(t)


AGENTS = ("adaptive", "slots")
# per agent, the defaults of the flags left out (adaptive | slots)
TRAIN_DEFAULTS = {
    "adaptive": {"timesteps": 20_000, "imitation_episodes": 64, "learning_rate": 3e-4,
                 "clip_range": 0.2, "n_envs": 2, "eval_every": 2_000, "eval_episodes": 12,
                 "jobs_min": 1000, "jobs_max": 4000, "eval_jobs": 2000},
    "slots": {"timesteps": 50_000, "imitation_episodes": 16, "learning_rate": 1e-4,
              "clip_range": 0.1, "n_envs": 4, "eval_every": 10_000, "eval_episodes": 4,
              "jobs_min": 150, "jobs_max": 400, "eval_jobs": 300},
}


def _per_agent(name: str) -> str:
    a, s = TRAIN_DEFAULTS["adaptive"][name], TRAIN_DEFAULTS["slots"][name]
    return f" Default: {a:,} (adaptive), {s:,} (slots)."


@app.command()
def train(
    workloads: str = typer.Option(..., help="Training sources, comma-separated: FORMAT:PATH "
                                  "(windows of a trace), builtin:NAME, gen:FILE, or wide:SOURCE "
                                  "(its duration shape, burstiness, sweeps and GPU mix varied "
                                  "per episode); append @CLUSTER to choose the cluster that is "
                                  "sized to each episode's load."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the models, TensorBoard logs, "
                                 "train_summary.json, eval_curve.png and manifest.json."),
    agent: str = typer.Option("adaptive", help="adaptive: a network that chooses, as the run "
                              "goes, which heuristic schedules (fifo, sjf, las, las-fcfs, "
                              "gittins), warm-started from the best heuristic of each episode; "
                              "slots: a network that makes every start and preemption, "
                              "cloned from LAS."),
    timesteps: int = typer.Option(None, help="PPO environment steps after the warm start "
                                  "(adaptive: choices of rule)." + _per_agent("timesteps")
                                  + _range("--timesteps")),
    seed: int = typer.Option(0, help="Seeds episodes, network and PPO." + _range("--seed")),
    validation: str = typer.Option(None, help="Validation sources (default: the last 20% of "
                                   "each training trace, kept out of training)."),
    imitation_episodes: int = typer.Option(None, help="Warm-start episodes (adaptive: each "
                                           "played by every heuristic; slots: LAS "
                                           "demonstrations; 0 = start from a random policy)."
                                           + _per_agent("imitation_episodes")
                                           + _range("--imitation-episodes")),
    dagger_rounds: int = typer.Option(2, help="slots: DAgger rounds after the demonstrations: "
                                      "the cloned policy plays, the expert labels."
                                      + _range("--dagger-rounds")),
    imitation_smoothing: float = typer.Option(0.0, help="slots: probability the cloned policy "
                                              "keeps for the actions the expert did not "
                                              "take (0 = certain; PPO then cannot depart "
                                              "from the expert)."
                                              + _range("--imitation-smoothing")),
    reward_baseline: str = typer.Option(None, help="Reward relative to this policy played "
                                        "on the same episode (adaptive: default las; slots: "
                                        "none)."),
    learning_rate: float = typer.Option(None, help="PPO step size." + _per_agent(
                                        "learning_rate") + _range("--learning-rate")),
    clip_range: float = typer.Option(None, help="PPO clip range." + _per_agent("clip_range")
                                     + _range("--clip-range")),
    n_envs: int = typer.Option(None, help="Episodes played side by side per rollout."
                               + _per_agent("n_envs") + _range("--n-envs")),
    eval_every: int = typer.Option(None, help="PPO steps between validation runs."
                                   + _per_agent("eval_every") + _range("--eval-every")),
    eval_episodes: int = typer.Option(None, help="Validation episodes (fixed)."
                                      + _per_agent("eval_episodes") + _range("--eval-episodes")),
    jobs_min: int = typer.Option(None, help="Fewest jobs in a training episode."
                                 + _per_agent("jobs_min") + _range("--jobs-min")),
    jobs_max: int = typer.Option(None, help="Most jobs in a training episode."
                                 + _per_agent("jobs_max") + _range("--jobs-max")),
    eval_jobs: int = typer.Option(None, help="Jobs in a validation episode (at most: a "
                                  "held-out part of a trace may be shorter)."
                                  + _per_agent("eval_jobs") + _range("--eval-jobs")),
    trust_file: list[Path] = typer.Option(None, "--trust-file", metavar="PATH",
                                          help="A generator given as gen:FILE: " + TRUST_HELP),
    estimator: str = typer.Option("history", help="slots: the predicted durations the agent "
                                  "sees: history (by user and GPU count) or ssl (the "
                                  "duration predictor shipped with autoflow); the model "
                                  "records it and is served with it."),
    objective: str = typer.Option("jct", help="adaptive: what an episode costs: jct (the "
                                  "jobs' completion times) or wct (units: a workflow, a "
                                  "pipeline of dependent jobs, counts as one, from its "
                                  "submission to its last stage's end; a job outside any "
                                  "as its own)."),
    candidates: str = typer.Option(None, help="adaptive: the heuristics it chooses among, "
                                   "comma-separated (default: fifo, sjf, las, las-fcfs, "
                                   "gittins, easy-backfill); e.g. add cp-first,srw for "
                                   "pipelines."),
    workflow_features: bool = typer.Option(False, "--workflow-features", help="adaptive: "
                                           "the observation also says what the waiting "
                                           "stages of pipelines unlock (held jobs and their "
                                           "GPUs, the critical path behind each stage)."),
) -> None:
    """Train the learned scheduler and keep the model that does best on validation
    workloads (the adaptive scheduler by default; see --agent)."""
    from .limits import check_flags, check_output_dir

    try:
        if agent not in AGENTS:
            raise AutoflowError(f"--agent must be one of {', '.join(AGENTS)}, got {agent!r}")
        given = {"timesteps": timesteps, "imitation_episodes": imitation_episodes,
                 "learning_rate": learning_rate, "clip_range": clip_range, "n_envs": n_envs,
                 "eval_every": eval_every, "eval_episodes": eval_episodes,
                 "jobs_min": jobs_min, "jobs_max": jobs_max, "eval_jobs": eval_jobs}
        v = {k: (x if x is not None else TRAIN_DEFAULTS[agent][k]) for k, x in given.items()}
        check_flags(seed=seed, dagger_rounds=dagger_rounds,
                    imitation_smoothing=imitation_smoothing, **v)
        if v["jobs_min"] > v["jobs_max"]:
            raise AutoflowError(f"--jobs-min ({v['jobs_min']}) must be <= --jobs-max "
                                f"({v['jobs_max']})")
        if reward_baseline:
            from .policies import parse_policy
            parse_policy(reward_baseline)  # an unknown name fails here, before any work
        if estimator not in ("history", "ssl"):
            raise AutoflowError(f"--estimator must be history or ssl, got {estimator!r}")
        if estimator != "history" and agent != "slots":
            raise AutoflowError("--estimator is for --agent slots (the adaptive agent chooses "
                                "among heuristics, which read their own estimates)")
        if objective not in ("jct", "wct"):
            raise AutoflowError(f"--objective must be jct or wct, got {objective!r}")
        if (objective != "jct" or candidates or workflow_features) and agent != "adaptive":
            raise AutoflowError("--objective, --candidates and --workflow-features are for "
                                "--agent adaptive")
        chosen = _candidates(candidates)
        check_output_dir(out_dir)
        _trust(trust_file)
    except AutoflowError as e:
        fail(e)
    command = "autoflow " + shlex.join(sys.argv[1:])
    try:
        if agent == "adaptive":
            from .agents.train_adaptive import AdaptiveConfig
            from .agents.train_adaptive import train as run_train
        else:
            from .agents.train import TrainConfig
            from .agents.train import train as run_train
    except ImportError as e:
        fail(AutoflowError(f"training needs the rl extra (pip install 'autoflow[rl]'): {e}"))
    try:
        if agent == "adaptive":
            cfg = AdaptiveConfig(
                workloads=workloads, out=str(out_dir), timesteps=v["timesteps"], seed=seed,
                validation=validation, teacher_episodes=v["imitation_episodes"],
                reference=reward_baseline or "las", learning_rate=v["learning_rate"],
                clip_range=v["clip_range"], n_envs=v["n_envs"], eval_every=v["eval_every"],
                eval_episodes=v["eval_episodes"], jobs=(v["jobs_min"], v["jobs_max"]),
                eval_jobs=v["eval_jobs"], objective=objective,
                workflow_features=workflow_features,
                **({"candidates": chosen} if chosen else {}))
        else:
            cfg = TrainConfig(
                workloads=workloads, out=str(out_dir), timesteps=v["timesteps"], seed=seed,
                validation=validation, imitation_episodes=v["imitation_episodes"],
                dagger_rounds=dagger_rounds, imitation_smoothing=imitation_smoothing,
                reward_baseline=reward_baseline, learning_rate=v["learning_rate"],
                clip_range=v["clip_range"], n_envs=v["n_envs"], eval_every=v["eval_every"],
                eval_episodes=v["eval_episodes"], jobs=(v["jobs_min"], v["jobs_max"]),
                eval_jobs=v["eval_jobs"], estimator=estimator)
        run_train(cfg, err, command=command)
    except KeyboardInterrupt as e:  # Interrupted: the model, summary and manifest are saved
        interrupted(e)
    except AutoflowError as e:
        fail(e)
    except OSError as e:  # e.g. a disk that filled up while writing the models
        fail(AutoflowError(f"{e.filename or ''}: {e.strerror or e}"))


models_app = typer.Typer(help="Export and trust learned models (see the README, \"Loading "
                                "models and generators\").", no_args_is_help=True)
app.add_typer(models_app, name="models", help="The model registry (register, list, show, "
              "promote, rollback); export SB3 zips to the safe format; record files as "
              "trusted.")

@models_app.command("export")
def models_export(
    model: Path = typer.Argument(..., help="SB3 zip written by `autoflow train`."),
    out_stem: Path = typer.Option(None, "--out", help="Write OUT.npz and OUT.json (default: "
                                  "beside the zip, same name)."),
    trust_file: list[Path] = typer.Option(None, "--trust-file", metavar="PATH",
                                          help=TRUST_HELP),
) -> None:
    """Write the safe export of an SB3 zip: the actor's weights (NAME.npz) and its card
    (NAME.json: sha256, feature schema, observation, network), which rl:PATH loads without
    unpickling. The zip itself loads only if trusted."""
    try:
        _trust(trust_file)
        from .agents.rl_policy import export_sb3
    except ImportError as e:
        fail(AutoflowError(f"exporting needs the rl extra (pip install 'autoflow[rl]'): {e}"))
    except AutoflowError as e:
        fail(e)
    try:
        card = export_sb3(model, out_stem)
    except AutoflowError as e:
        fail(e)
    except OSError as e:
        fail(AutoflowError(f"{e.filename or ''}: {e.strerror or e}"))
    out.print(f"wrote {card.with_suffix('.npz')}, {card}")


@models_app.command("trust")
def models_trust(
    path: Path = typer.Argument(..., help="A model or generator file you trust (e.g. one you "
                                "trained on another machine)."),
) -> None:
    """Record a file's sha256 in your trust registry: later commands unpickle it without
    --trust-file. Only for files whose author you trust: a pickle can run code."""
    from . import trust

    try:
        if not path.is_file():
            raise AutoflowError(f"{path}: no such file")
        sha = trust.sha256_file(path)
        if not trust.record(path, sha, "by-hand"):
            raise AutoflowError(f"could not write {trust.registry_path()}")
    except AutoflowError as e:
        fail(e)
    except OSError as e:
        fail(AutoflowError(f"{e.filename or ''}: {e.strerror or e}"))
    out.print(f"trusted {path} (sha256 {sha}) in {trust.registry_path()}")


# -- the model registry (autoflow.loop.registry): in the service's store, files beside it
def _service_db() -> str:
    from .service import DEFAULT_DB  # a constant: no extra needed

    return DEFAULT_DB


REGISTRY_DB_HELP = ("The service's database URL, where the registry lives: sqlite:///PATH "
                    "or postgresql://USER@HOST/DB.")
REGISTRY_FILES_HELP = ("Folder of the registered models' files (default: models/ beside a "
                       "SQLite database file; autoflow-data/models for PostgreSQL).")


def _open_registry(db: str, files: Path | None):
    try:
        from .loop.registry import Registry
    except ImportError as e:
        from .service.cli import NEEDS_SERVE

        raise AutoflowError(f"the model registry lives in the service's store: "
                            f"{NEEDS_SERVE} ({e})") from e
    return Registry(db, files)


def _json_flag(value: str | None, flag: str) -> dict | None:
    import json

    if value is None:
        return None
    try:
        got = json.loads(value)
    except ValueError as e:
        raise AutoflowError(f"{flag}: not JSON ({e})") from None
    if not isinstance(got, dict):
        raise AutoflowError(f"{flag}: must be a JSON object, e.g. '{{\"key\": \"value\"}}'")
    return got


def _when(epoch: float | None) -> str:
    from datetime import UTC, datetime

    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_json(obj) -> None:
    from .jsonsafe import dumps

    print(dumps(obj, indent=2))


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _registry_call(db: str, files: Path | None, fn):
    """Runs ``fn(registry)``; every error is one line."""
    reg = None
    try:
        reg = _open_registry(db, files)
        return fn(reg)
    except AutoflowError as e:
        fail(e)
    except OSError as e:
        fail(AutoflowError(f"{e.filename or ''}: {e.strerror or e}"))
    finally:
        if reg is not None:
            reg.close()


@models_app.command("register")
def models_register(
    path: Path = typer.Argument(..., help="The model: an adaptive (or rl) card NAME.json "
                                "with its weights NAME.npz beside it, a predictor folder "
                                "(model.json and its weights), or a generator file with "
                                "its NAME.card.json."),
    kind: str = typer.Option(..., help="adaptive, predictor, generator, or another short "
                             "name ([a-z][a-z0-9_-], at most 32)."),
    name: str = typer.Option(None, help="A name to show (default: the file's or folder's)."),
    lineage: str = typer.Option(None, help="JSON object: data window, parent model, "
                                "command, commit, ..."),
    metrics: str = typer.Option(None, help="JSON object of the model's metrics."),
    db: str = typer.Option(_service_db(), help=REGISTRY_DB_HELP),
    files: Path = typer.Option(None, help=REGISTRY_FILES_HELP),
) -> None:
    """Copy a model into the registry, keyed by its card's sha256 (which records its
    weights' sha256, checked first). The same content again changes nothing."""
    def run(reg):
        from .loop.registry import content_hash

        lin, met = _json_flag(lineage, "--lineage"), _json_flag(metrics, "--metrics")
        known = reg.get(content_hash(path)) is not None
        sha = reg.register(path, kind=kind, name=name, lineage=lin, metrics=met)
        return sha, known, reg.get(sha)

    sha, known, rec = _registry_call(db, files, run)
    if known:
        out.print(f"already registered: {sha} ({rec['kind']} {rec['name']}), "
                  f"first record kept", highlight=False, soft_wrap=True)
    else:
        out.print(f"registered {sha} ({rec['kind']} {rec['name']}) -> {rec['files']}",
                  highlight=False, soft_wrap=True)


@models_app.command("list")
def models_list(
    db: str = typer.Option(_service_db(), help=REGISTRY_DB_HELP),
    files: Path = typer.Option(None, help=REGISTRY_FILES_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON."),
) -> None:
    """List the registered models, newest first, with their aliases."""
    rows = _registry_call(db, files, lambda reg: reg.list())
    if as_json:
        _print_json(rows)
        return
    tb = Table(title=f"models ({len(rows)})")
    for col in ("sha256", "kind", "name", "aliases", "feature schema", "registered"):
        tb.add_column(col)
    for r in rows:
        tb.add_row(_short(r["sha256"]), escape(r["kind"]), escape(r["name"]),
                   escape(", ".join(r["aliases"])) or "-", escape(r["feature_schema"] or "-"),
                   _when(r["created_at"]))
    out.print(tb)


@models_app.command("show")
def models_show(
    ref: str = typer.Argument(..., help="An alias (champion, challenger, previous, ...), a "
                              "sha256 or a prefix of at least 8 hex characters."),
    db: str = typer.Option(_service_db(), help=REGISTRY_DB_HELP),
    files: Path = typer.Option(None, help=REGISTRY_FILES_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the record and its events "
                                 "as JSON."),
) -> None:
    """Show a model: its record, aliases, lineage, metrics and every event about it."""
    def run(reg):
        rec = reg.get(ref)
        if rec is None:
            raise AutoflowError(f"model {ref!r}: not in the registry (name a model by an "
                                f"alias, its sha256 or a prefix of at least 8 hex "
                                f"characters)")
        return rec, reg.events(limit=1000, sha=rec["sha256"])

    rec, events = _registry_call(db, files, run)
    if as_json:
        _print_json({"model": rec, "events": events})
        return
    import json

    tb = Table(title=f"model {rec['sha256']}", show_header=False)
    tb.add_column("field")
    tb.add_column("value")
    for key in ("kind", "name", "aliases", "feature_schema", "created_at", "files",
                "lineage", "metrics"):
        v = rec[key]
        if key == "created_at":
            v = _when(v)
        elif key == "aliases":
            v = ", ".join(v) or "-"
        elif isinstance(v, dict | list):
            v = json.dumps(v, sort_keys=True) if v else "-"
        tb.add_row(key.replace("_", " "), escape(str(v if v is not None else "-")))
    out.print(tb)
    ev = Table(title=f"events ({len(events)})")
    for col in ("when", "action", "alias", "model", "before", "reason", "evidence"):
        ev.add_column(col)
    for e in events:
        ev.add_row(_when(e["at"]), e["action"], escape(e["alias"] or "-"),
                   _short(e["sha256"]), _short(e["previous_sha256"]), escape(e["reason"]),
                   escape(json.dumps(e["evidence"], sort_keys=True))
                   if e["evidence"] is not None else "-")
    out.print(ev)


@models_app.command("promote")
def models_promote(
    ref: str = typer.Argument(..., help="The model to make champion: an alias (e.g. "
                              "challenger), a sha256 or a prefix of at least 8 hex "
                              "characters."),
    reason: str = typer.Option(..., help="Why (recorded with the swap)."),
    db: str = typer.Option(_service_db(), help=REGISTRY_DB_HELP),
    files: Path = typer.Option(None, help=REGISTRY_FILES_HELP),
) -> None:
    """Make a model the champion; the champion before it becomes previous. Recorded with
    the reason."""
    def run(reg):
        before = reg.alias("champion")
        return reg.promote(ref, reason=reason), before

    rec, before = _registry_call(db, files, run)
    out.print(f"champion: {rec['sha256'][:12]} ({rec['kind']} {rec['name']}); previous: "
              f"{before['sha256'][:12] if before else '-'}", highlight=False)


@models_app.command("rollback")
def models_rollback(
    reason: str = typer.Option(..., help="Why (recorded with the swap)."),
    db: str = typer.Option(_service_db(), help=REGISTRY_DB_HELP),
    files: Path = typer.Option(None, help=REGISTRY_FILES_HELP),
) -> None:
    """Put the previous champion back (champion and previous swap: a second rollback
    undoes the first). Recorded with the reason."""
    def run(reg):
        return reg.rollback(reason=reason), reg.alias("previous")

    rec, prev = _registry_call(db, files, run)
    out.print(f"champion: {rec['sha256'][:12]} ({rec['kind']} {rec['name']}); previous: "
              f"{prev['sha256'][:12] if prev else '-'}", highlight=False)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
