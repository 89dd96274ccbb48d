"""CLI verbs of the service: ``serve``, ``tokens``, and the client verbs ``submit``,
``jobs``, ``why`` that talk to a running server (``--url``, ``--token`` or the
``AUTOFLOW_URL`` / ``AUTOFLOW_TOKEN`` environment variables). The workflow verbs
(``autoflow workflows submit|show|cancel``, ``autoflow.workflow_cli``) use the same
options and helpers (``client_for``, ``call``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import typer

from ..errors import AutoflowError, ConfigError
from ..limits import check_flags
from . import DEFAULT_DB

EXECUTORS = ("none", "sim", "ray")
NEEDS_SERVE = "the service needs the serve extra: pip install 'autoflow[serve]'"


def open_store(db: str):
    """The service's store at ``db`` (ConfigError without the serve extra)."""
    try:
        from .store import Store
    except ImportError as e:
        raise ConfigError(f"{NEEDS_SERVE} ({e})") from e
    return Store(db)


URL_HELP = "Server URL (default $AUTOFLOW_URL or http://127.0.0.1:8080)."
TOKEN_HELP = "Bearer token (default $AUTOFLOW_TOKEN)."


def client_for(url: str | None, token: str | None, fail: Callable[[Exception], None]):
    """A ``Client`` for ``url`` / ``token`` (``fail``: a ConfigError without the serve
    extra)."""
    try:
        from ..client import Client
    except ImportError as e:
        fail(ConfigError(f"{NEEDS_SERVE} ({e})"))
    return Client(url, token)


def call(fn: Callable[[], object], fail: Callable[[Exception], None]):
    """``fn()``, with the server's error (or none reached) as one line through ``fail``."""
    from ..client import ClientError

    try:
        return fn()
    except ClientError as e:
        fail(e)


def job_ids_flag(flag: str, values: list[str] | None, most: int) -> list[str]:
    """The job ids of a flag given as ``a,b`` (and/or repeated): each a valid job id, none
    twice, at most ``most``; a ConfigError naming the flag."""
    from .schemas import NAME

    ids: list[str] = []
    for v in values or []:
        for x in v.split(","):
            x = x.strip()
            if not x:
                raise ConfigError(f"{flag}: an empty job id in {v!r} (give ids separated by "
                                  f"commas: a,b)")
            if len(x) > 200 or not re.match(NAME, x):
                raise ConfigError(f"{flag}: {x!r} is not a job id (letters, digits and "
                                  f"._:/@- , at most 200 characters, starting with a letter "
                                  f"or digit)")
            if x in ids:
                raise ConfigError(f"{flag}: {x!r} appears twice")
            ids.append(x)
    if len(ids) > most:
        raise ConfigError(f"{flag}: at most {most:,} job ids, got {len(ids):,}")
    return ids


def register(app: typer.Typer, out, err, fail) -> None:
    tokens_app = typer.Typer(help="Create, list and revoke API tokens (stored hashed).",
                             no_args_is_help=True)
    app.add_typer(tokens_app, name="tokens", help="API tokens for `autoflow serve`.")

    @app.command()
    def serve(
        db: str = typer.Option(DEFAULT_DB, help="Database URL: sqlite:///PATH (created) or "
                               "postgresql://USER@HOST/DB."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(8080, min=0, max=65535, help="Port to listen on."),
        policy: str = typer.Option("las", help="Serving policy: any of `autoflow policies`, "
                                   "rl:PATH included. A store that served before keeps its "
                                   "last policy (switch with PUT /v1/policy)."),
        executor: str = typer.Option("none", help="none: an external executor reports "
                                     "outcomes; sim: a built-in executor runs each started "
                                     "job for the duration it declared on the scaled clock; "
                                     "ray: each started job runs as Ray tasks pinned to its "
                                     "node(s): its entrypoint, or its declared duration."),
        ray_address: str = typer.Option(None, help="With --executor ray: an existing Ray "
                                        "cluster (auto: the one this machine belongs to); "
                                        "without it, an embedded local Ray cluster with "
                                        "one Ray node per registered node."),
        checkpoint_dir: str = typer.Option("autoflow-data/checkpoints", help="With "
                                           "--executor ray: the folder jobs checkpoint to "
                                           "(shared storage on a multi-machine cluster)."),
        checkpoint_interval: float = typer.Option(300.0, help="With --executor ray: cluster "
                                                  "seconds between the checkpoints of a job "
                                                  "without an entrypoint (0: only when it "
                                                  "stops)."),
        time_scale: float = typer.Option(1.0, help="Cluster seconds per wall second "
                                         "(> 0, <= 1e6): 600 runs ten cluster minutes a "
                                         "second."),
        restart_overhead: float = typer.Option(0.0, help="Seconds a restarted job loses "
                                               "(>= 0, <= 86,400)."),
        default_slo: float = typer.Option(60.0, help="Start-delay SLO of inference jobs "
                                          "that declare none (> 0)."),
        log_level: str = typer.Option("info", help="uvicorn's log level."),
        extender_port: int = typer.Option(None, min=0, max=65535, help="Serve the Kubernetes "
                                          "scheduler extender (/k8s/filter, prioritize, bind, "
                                          "preempt) on this port, over mutual TLS "
                                          "(--tls-cert, --tls-key, --tls-client-ca); it is "
                                          "never served on --port."),
        extender_host: str = typer.Option(None, help="Address of the extender's listener "
                                          "(default: --host)."),
        tls_cert: str = typer.Option(None, help="The extender's server certificate (PEM)."),
        tls_key: str = typer.Option(None, help="Its private key (PEM)."),
        tls_client_ca: str = typer.Option(None, help="CA certificate (PEM) that signed the "
                                          "client certificates kube-scheduler presents; "
                                          "clients without one are refused."),
        k8s_api: str = typer.Option(None, help="Kubernetes API server URL: the extender's "
                                    "bind POSTs the pod's Binding there (without it, bind "
                                    "only records the placement)."),
        k8s_token_file: str = typer.Option(None, help="Bearer token file for --k8s-api "
                                           "(e.g. a service-account token)."),
        k8s_ca_file: str = typer.Option(None, help="CA certificate of --k8s-api's server."),
        k8s_pod_sync: float = typer.Option(5.0, help="Seconds between checks of the pods "
                                           "bound through autoflow (with --k8s-api: their "
                                           "outcomes become job events; > 0, <= 3,600)."),
        self_optimize: bool = typer.Option(False, "--self-optimize", help="Serve the model "
                                           "registry's champion (in this store) and follow "
                                           "its promotions and rollbacks: the next pass is "
                                           "the new champion's; decisions issued stand."),
        self_optimize_interval: float = typer.Option(5.0, help="With --self-optimize: "
                                                     "seconds between reads of the registry "
                                                     "(> 0, <= 3,600)."),
        self_optimize_window: int = typer.Option(500, help="With --self-optimize: jobs per "
                                                 "window of the loop (>= 20): every so many "
                                                 "submitted jobs, their outcomes are tested "
                                                 "for drift and against the heuristics, and "
                                                 "a challenger is trained and compared; 0: "
                                                 "only follow the registry's champion."),
    ) -> None:
        """Run the placement service (FastAPI under uvicorn)."""
        try:
            import uvicorn

            from .app import ServeConfig, create_app

            if executor not in EXECUTORS:
                raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got "
                                  f"{executor!r}")
            check_flags(time_scale=time_scale, restart_overhead=restart_overhead,
                        default_slo=default_slo, k8s_pod_sync=k8s_pod_sync,
                        checkpoint_interval=checkpoint_interval)
            if ray_address is not None and executor != "ray":
                raise ConfigError("--ray-address is for --executor ray")
            if not 0 < self_optimize_interval <= 3600:
                raise ConfigError(f"--self-optimize-interval must be in (0, 3600], got "
                                  f"{self_optimize_interval}")
            if self_optimize_window:
                from ..loop.online import check_window

                check_window(self_optimize_window)
            from . import k8s

            tls = k8s.check_serve_flags(extender_port, tls_cert, tls_key, tls_client_ca,
                                        k8s_api, k8s_token_file, k8s_ca_file)
            cfg = ServeConfig(db=db, policy=policy, executor=executor, time_scale=time_scale,
                              ray_address=ray_address, checkpoint_dir=checkpoint_dir,
                              checkpoint_interval_s=checkpoint_interval,
                              restart_overhead_s=restart_overhead, default_slo_s=default_slo,
                              k8s_api=k8s_api, k8s_token_file=k8s_token_file,
                              k8s_ca_file=k8s_ca_file, k8s_pod_sync_s=k8s_pod_sync,
                              self_optimize=self_optimize,
                              self_optimize_interval_s=self_optimize_interval,
                              self_optimize_window=self_optimize_window)
            application = create_app(cfg)  # the store, the policy: checked before listening
        except ImportError as e:
            fail(ConfigError(f"{NEEDS_SERVE} ({e})"))
        except AutoflowError as e:
            fail(e)
        svc = application.state.service
        err.print(f"autoflow serve: {svc.store.url.split('@')[-1]} · policy "
                  f"{svc.engine.policy_spec} · executor {executor} · http://{host}:{port}",
                  highlight=False)
        if extender_port is not None:
            try:
                k8s.serve_with_extender(application, host, port, extender_host or host,
                                        extender_port, tls, log_level, err)
            except AutoflowError as e:
                fail(e)
            return
        uvicorn.run(application, host=host, port=port, log_level=log_level)

    @tokens_app.command("create")
    def tokens_create(
        scope: str = typer.Option(..., help="admin, executor, submitter or reader."),
        name: str = typer.Option(..., help="Who or what holds it (shown in logs and "
                                 "policy changes)."),
        db: str = typer.Option(DEFAULT_DB, help="The service's database URL."),
    ) -> None:
        """Create a token; it is printed once (the last line of stdout), stored hashed."""
        try:
            try:
                from .store import SCOPES
            except ImportError as e:
                raise ConfigError(f"{NEEDS_SERVE} ({e})") from e
            if scope not in SCOPES:  # before any store is made
                raise ConfigError(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
            store = open_store(db)
            token = store.create_token(name, scope)
            store.close()
        except AutoflowError as e:
            fail(e)
        err.print(f"token {name!r} with scope {scope!r} created; it is shown once:")
        print(token)

    @tokens_app.command("list")
    def tokens_list(db: str = typer.Option(DEFAULT_DB, help="The service's database URL.")):
        """List tokens (names and scopes; the tokens themselves are not stored)."""
        try:
            store = open_store(db)
            rows = store.tokens()
            store.close()
        except AutoflowError as e:
            fail(e)
        for r in rows:
            out.print(f"{r['name']}\t{r['scope']}\t{'revoked' if r['revoked'] else 'live'}",
                      highlight=False)

    @tokens_app.command("revoke")
    def tokens_revoke(name: str = typer.Argument(..., help="The token's name."),
                      db: str = typer.Option(DEFAULT_DB, help="The service's database URL.")):
        """Revoke every token with this name (a running server stops accepting it within
        seconds)."""
        try:
            store = open_store(db)
            n = store.revoke_token(name)
            store.close()
            if not n:
                raise ConfigError(f"no token named {name!r}")
        except AutoflowError as e:
            fail(e)
        err.print(f"revoked {n} token(s) named {name!r}")

    url_opt = typer.Option(None, "--url", help=URL_HELP)
    token_opt = typer.Option(None, "--token", help=TOKEN_HELP)

    def _client(url, token):
        return client_for(url, token, fail)

    def _call(fn):
        return call(fn, fail)

    @app.command()
    def submit(
        num_gpus: int = typer.Option(1, "--gpus", help="GPUs (0 for a CPU job)."),
        gpu_milli: int = typer.Option(1000, help="Share of the GPU in thousandths "
                                      "(single-GPU jobs)."),
        gpu_type: list[str] = typer.Option(None, "--gpu-type", help="Allowed GPU type "
                                           "(repeatable; default any)."),
        kind: str = typer.Option("training", help="training or inference."),
        duration_estimate: float = typer.Option(None, "--duration-estimate",
                                                help="Expected run time, seconds."),
        user: str = typer.Option("", help="Owner."),
        job_id: str = typer.Option(None, "--job-id", help="Job id (default: generated)."),
        slo: float = typer.Option(None, "--slo", help="Start-delay SLO, seconds (inference)."),
        qos: str = typer.Option("", help="QoS class."),
        cpu_milli: int = typer.Option(0, help="CPU, thousandths of a core."),
        memory_mib: int = typer.Option(0, help="Memory, MiB."),
        workflow_id: str = typer.Option(None, "--workflow-id", help="The workflow (pipeline "
                                        "run) the job is a stage of."),
        depends_on: list[str] = typer.Option(None, "--depends-on", help="Job ids that must "
                                             "succeed before this one may start: a,b "
                                             "(repeatable). Each must exist; the job is held "
                                             "(pending) until they have succeeded, and "
                                             "cancelled if one does not."),
        url: str = url_opt, token: str = token_opt,
    ) -> None:
        """Submit a job to a running server; prints its id (the last line of stdout)."""
        from .schemas import MAX_DEPENDS_ON, NAME

        try:
            parents = job_ids_flag("--depends-on", depends_on, MAX_DEPENDS_ON)
            if workflow_id is not None and (len(workflow_id) > 200
                                            or not re.match(NAME, workflow_id)):
                raise ConfigError(f"--workflow-id: {workflow_id!r} is not a workflow id "
                                  f"(letters, digits and ._:/@- , at most 200 characters, "
                                  f"starting with a letter or digit)")
            if job_id is not None and job_id in parents:
                raise ConfigError(f"--depends-on: names the job itself ({job_id!r})")
        except ConfigError as e:
            fail(e)
        body = {"num_gpus": num_gpus, "gpu_milli": gpu_milli, "gpu_types": gpu_type or [],
                "kind": kind, "user": user, "qos": qos, "cpu_milli": cpu_milli,
                "memory_mib": memory_mib}
        for k, v in (("job_id", job_id), ("duration_estimate_s", duration_estimate),
                     ("slo_s", slo), ("workflow_id", workflow_id),
                     ("depends_on", parents or None)):
            if v is not None:
                body[k] = v
        with _client(url, token) as c:
            r = _call(lambda: c.submit(**body))
            said = f"submitted, {r['state']}"
            if r["state"] == "cancelled":  # a parent had ended without succeeding
                said += f": {_call(lambda: c.job(r['job_id']))['reason']}"
            elif parents and r["state"] == "pending":
                said += " (held until the jobs it depends on have succeeded)"
        err.print(said, highlight=False)
        print(r["job_id"])

    @app.command()
    def jobs(
        state: list[str] = typer.Option(None, "--state", help="Only jobs in this state "
                                        "(repeatable)."),
        user: str = typer.Option(None, help="Only this user's jobs."),
        limit: int = typer.Option(50, min=1, max=1000, help="At most this many."),
        as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
        url: str = url_opt, token: str = token_opt,
    ) -> None:
        """List jobs on a running server: id, state, GPUs, nodes, workflow (and the jobs
        it depends on), tab-separated."""
        with _client(url, token) as c:
            page = _call(lambda: c.jobs(state=state, user=user, limit=limit))
        if as_json:
            print(json.dumps(page["jobs"], indent=2))
            return
        for j in page["jobs"]:
            where = ",".join(n["node"] for n in (j["placement"] or {}).get("nodes", []))
            flow = j.get("workflow_id") or "-"  # its workflow, and the jobs it waits for
            if j.get("depends_on"):
                flow += " after " + ",".join(j["depends_on"])
            print(f"{j['job_id']}\t{j['state']}\t{j['num_gpus']} GPU(s)\t{where or '-'}"
                  f"\t{flow}")  # real tabs (cut -f), not rich's spaces

    @app.command()
    def why(job_id: str = typer.Argument(..., help="The job."),
            as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
            url: str = url_opt, token: str = token_opt) -> None:
        """Why a job is where it is: its pending reasons, queue position and ETA."""
        with _client(url, token) as c:
            r = _call(lambda: c.why(job_id))
        if as_json:
            print(json.dumps(r, indent=2))
            return
        eta = r.get("eta_s")
        out.print(f"{r['job_id']}: {r['state']}"
                  + (f", position {r['queue_position']}" if r.get("queue_position") else "")
                  + (f", starts in about {eta:,.0f} s" if eta is not None else ""),
                  highlight=False)
        for reason in r.get("reasons", []):
            out.print(f"  {reason['code']}: {reason['message']}", highlight=False)
