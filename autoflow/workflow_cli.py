"""``autoflow workflows``: check a workflow template, expand it into runs for simulation;
and, on a running server (``autoflow serve``), submit a run of one, show a run, cancel a
run (``--url``, ``--token`` or ``AUTOFLOW_URL`` / ``AUTOFLOW_TOKEN``, as ``autoflow
submit``)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from .errors import AutoflowError, ConfigError
from .service.cli import TOKEN_HELP, URL_HELP

app = typer.Typer(no_args_is_help=True, add_completion=False)
URL = typer.Option(None, "--url", help=URL_HELP)
TOKEN = typer.Option(None, "--token", help=TOKEN_HELP)


@app.command("check")
def check(path: Path = typer.Argument(..., help="A workflow template (YAML).")) -> None:
    """Check a template and print its stages, in order."""
    from .cli import err, fail
    from .workflow_file import load

    try:
        t = load(path)
    except AutoflowError as e:
        fail(e)
    every = f"every {t.every_s:g} s at +{t.at_s:g} s" if t.every_s else "ad hoc"
    err.print(f"{t.name}: {len(t.stages)} stages, {every}")
    for s in t.stages:
        f = s.fields
        share = f.get("gpu_milli", 1000)
        what = (f"{f.get('num_gpus', 1)} GPU(s)"
                + (f" x {share}/1000 (shared)" if share < 1000 else "")
                if f.get("num_gpus", 1) else f"CPU only ({f.get('cpu_milli', 0)} mCPU)")
        reps = f" x{s.replicas}" if s.replicas > 1 else ""
        deps = f" after {', '.join(s.depends_on)}" if s.depends_on else ""
        hint = f", about {s.duration_hint_s:g} s" if s.duration_hint_s else ""
        runs = f", runs {s.run['entrypoint']!r}" if s.run and "entrypoint" in s.run else ""
        print(f"{s.name}{reps}: {f.get('kind', 'training')}, {what}{hint}{deps}{runs}")


@app.command("expand")
def expand(path: Path = typer.Argument(..., help="A workflow template (YAML)."),
           runs: int = typer.Option(30, help="Runs of the template, on its schedule."),
           seed: int = typer.Option(0, help="Seed of the durations drawn around the hints."),
           out: Path = typer.Option(..., "--out", help="The normalized CSV to write "
                                    "(workflow_id and depends_on columns included).")
           ) -> None:
    """Write RUNS runs of a template as a normalized job CSV, true durations drawn
    around each stage's hint, for autoflow bench / train (csv:OUT)."""
    from .cli import err, fail
    from .traces import normalized
    from .workflow_file import expand as expand_runs
    from .workflow_file import load
    from .workload import Workload

    try:
        if seed < 0:
            raise AutoflowError(f"--seed must be >= 0, got {seed}")
        t = load(path)
        jobs = expand_runs(t, runs, seed)
        normalized.write(Workload(jobs, source=str(path)), out)
    except AutoflowError as e:
        fail(e)
    err.print(f"wrote {out}: {runs} runs of {t.name}, {len(jobs)} jobs")
    running = [st.name for st in t.stages if st.run]
    if running:
        err.print(f"note: the entrypoint and runtime_env of {', '.join(running)} are not in "
                  f"the CSV (a simulation models a stage's resources and duration only)")


def _body(path: Path, run: str | None) -> tuple[dict, str | None]:
    """The template and run id of ``POST /v1/workflows`` from a file that holds either a
    template or a whole request body (``{"template": ..., "run": ...}``), checked here
    first (errors name the file, the stage and the field); ``run`` overrides the body's."""
    from .service.schemas import RUN_ID
    from .workflow_file import parse, read

    data = read(path)
    if isinstance(data, dict) and "template" in data:
        extra = set(data) - {"template", "run"}
        if extra:
            raise ConfigError(f"{path}: unknown field {min(extra)!r} (a request body has "
                              f"template and run)")
        template, in_file = data["template"], data.get("run")
        if in_file is not None and not isinstance(in_file, str):
            raise ConfigError(f"{path} field 'run': a run id (text), got {in_file!r}")
        run = run if run is not None else in_file
        where = f"{path} field 'template'"
    else:
        template, where = data, str(path)
    parse(template, where)
    if run is not None and not re.match(RUN_ID, run):
        raise ConfigError(f"--run: {run!r} is not a run id (letters, digits, '-', '_', '.', "
                          f"at most 100, starting with a letter or digit)")
    return template, run


@app.command("submit")
def submit(path: Path = typer.Argument(..., help="A workflow template (YAML or JSON), or a "
                                       "request body {template, run} as JSON or YAML."),
           run: str = typer.Option(None, "--run", help="The run's id, its workflow_id "
                                   "(default: the file's run, else NAME-<12 hex>)."),
           as_json: bool = typer.Option(False, "--json", help="The answer as JSON on stdout."),
           url: str = URL, token: str = TOKEN) -> None:
    """Submit one run of a template to a running server.

    POST /v1/workflows: every stage's job(s), each held until the stages it depends on
    have succeeded. Prints the run's id (the last line of stdout)."""
    import json

    from .cli import err, fail
    from .service.cli import call, client_for

    try:
        template, run = _body(path, run)
    except AutoflowError as e:
        fail(e)
    with client_for(url, token, fail) as c:
        r = call(lambda: c.submit_workflow(template, run), fail)
    if as_json:
        print(json.dumps(r, indent=2))
        return
    err.print(f"submitted workflow {r['workflow_id']}: {len(r['jobs'])} job(s)",
              highlight=False)
    print(r["workflow_id"])


def _print_view(v: dict) -> None:
    from .cli import out

    counts = ", ".join(f"{n} {s}" for s, n in v["jobs"].items())
    times = "".join(f", {k.removesuffix('_time')} {v[k]:,.0f} s" for k in
                    ("submit_time", "start_time", "finish_time") if v.get(k) is not None)
    out.print(f"{v['workflow_id']}: {v['state']}"
              + (f" ({v['template']})" if v.get("template") else "")
              + f", {counts}{times}", highlight=False)
    for st in v["stages"]:
        out.print(f"  {st['name']}: {st['state']}", highlight=False)
        for j in st["jobs"]:
            after = f" after {', '.join(j['depends_on'])}" if j["depends_on"] else ""
            why = f": {j['reason']}" if j.get("reason") else ""
            out.print(f"    {j['job_id']}: {j['state']}{after}{why}", highlight=False)


@app.command("show")
def show(workflow_id: str = typer.Argument(..., help="The workflow (run) id."),
         as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
         url: str = URL, token: str = TOKEN) -> None:
    """Show a workflow on a running server.

    GET /v1/workflows/ID: its state, its stages and their jobs (state, parents, why one
    ended)."""
    import json

    from .cli import fail
    from .service.cli import call, client_for

    with client_for(url, token, fail) as c:
        v = call(lambda: c.workflow(workflow_id), fail)
    if as_json:
        print(json.dumps(v, indent=2))
        return
    _print_view(v)


@app.command("cancel")
def cancel(workflow_id: str = typer.Argument(..., help="The workflow (run) id."),
           running: bool = typer.Option(False, "--running", help="Stop its running jobs "
                                        "too (by default they run to their end; nothing "
                                        "after them starts)."),
           as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
           url: str = URL, token: str = TOKEN) -> None:
    """Cancel a workflow on a running server.

    DELETE /v1/workflows/ID: its pending jobs, held or waiting (with --running, its
    running jobs too)."""
    import json

    from .cli import err, fail
    from .service.cli import call, client_for

    with client_for(url, token, fail) as c:
        v = call(lambda: c.cancel_workflow(workflow_id, running), fail)
    if as_json:
        print(json.dumps(v, indent=2))
        return
    gone = v["cancelled"]
    err.print(f"cancelled {len(gone)} job(s)" + (f": {', '.join(gone)}" if gone else ""),
              highlight=False)
    _print_view(v)
