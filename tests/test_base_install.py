"""Every command starts with only the base install (pyproject ``dependencies``).

The CLI runs in a subprocess where an import hook makes the packages of the extras (and
scipy, which no extra of ours declares) unimportable, as on a fresh ``pip install
autoflow``. Each command's ``--help`` must work (the commands are enumerated from the
typer app, so a new one is covered); a command that needs no extra runs; a command that
needs one says which, in one line, without a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import typer.main

from autoflow.cli import app

# rl: torch, gymnasium, stable-baselines3, sb3-contrib; synth: sdv and what it brings;
# serve: fastapi, uvicorn, sqlalchemy, alembic, psycopg, httpx, prometheus-client
BLOCKED = ("scipy", "sdv", "torch", "gymnasium", "stable_baselines3", "sb3_contrib",
           "copulas", "ctgan", "rdt", "fastapi", "starlette", "uvicorn", "sqlalchemy",
           "alembic", "psycopg", "httpx", "prometheus_client")

HOOK = f"""
import sys

class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Absent())
"""

RUN_CLI = HOOK + """
from autoflow.cli import app
app(sys.argv[1:], prog_name="autoflow")
"""

HELP_ALL = HOOK + """
import json
from typer.testing import CliRunner
from autoflow.cli import app

runner = CliRunner()
results = {}
for args in json.loads(sys.argv[1]):
    r = runner.invoke(app, [*args, "--help"])
    crash = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(
        r.exception)
    results[" ".join(args) or "(top)"] = [r.exit_code, crash, r.output[:300]]
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
print(json.dumps({"results": results, "loaded": loaded}))
""".replace("BLOCKED", repr(BLOCKED))


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN_CLI, *args], capture_output=True,
                          text=True, cwd=cwd, check=False)


def _command_paths(cmd, prefix=()):
    yield list(prefix)
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _command_paths(sub, (*prefix, name))


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_every_help_works_without_the_extras(tmp_path):
    paths = list(_command_paths(typer.main.get_command(app)))
    names = {" ".join(p) for p in paths}
    assert {"bench", "train", "traces inspect", "generate fit", "generate report"} <= names
    proc = subprocess.run([sys.executable, "-c", HELP_ALL, json.dumps(paths)],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name, (code, crash, text) in out["results"].items():
        assert crash is None and code == 0, f"autoflow {name} --help: {crash}\n{text}"
        assert "Usage" in text
    assert out["loaded"] == []


def test_a_bench_needs_no_extra_and_rl_names_its_extra(tmp_path):
    ok = _cli("bench", "--trace", "builtin:philly-mix-small:60", "--policies", "fifo,las",
              "--cluster", "philly-64", "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "b" / "results.json").exists()
    rl = _cli("bench", "--trace", "builtin:philly-mix-small:60", "--policies", "fifo,rl",
              "--out", str(tmp_path / "rl"), cwd=tmp_path)
    _one_line_error(rl, "pip install 'autoflow[rl]'")
    train = _cli("train", "--workloads", "builtin:philly-mix-small", "--out",
                 str(tmp_path / "t"), cwd=tmp_path)
    _one_line_error(train, "pip install 'autoflow[rl]'")


def test_generators_without_sdv_or_scipy(tmp_path):
    """The permissive fallback fits, samples and reports on the base install; an SDV
    model says it needs the synth extra."""
    gen, syn, rep = tmp_path / "g.gen", tmp_path / "syn.csv", tmp_path / "rep"
    fit = _cli("generate", "fit", "--trace", "builtin:philly-mix-small:300", "--out", str(gen),
               cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    assert "pip install 'autoflow[synth]'" in fit.stderr  # copula fell back to empirical
    sample = _cli("generate", "sample", "--model", str(gen), "-n", "200", "--out", str(syn),
                  cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    report = _cli("generate", "report", "--real", "builtin:philly-mix-small:300",
                  "--synthetic", str(syn), "--out", str(rep), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    body = json.loads((rep / "report.json").read_text())
    assert body["sdv_quality_score"] is None and set(body["ks"]) >= {"kind", "log_duration"}
    ctgan = _cli("generate", "fit", "--trace", "builtin:philly-mix-small:300", "--model",
                 "ctgan", "--out", str(tmp_path / "c.gen"), cwd=tmp_path)
    _one_line_error(ctgan, "pip install 'autoflow[synth]'")


def test_the_service_verbs_name_the_serve_extra(tmp_path):
    """Without fastapi, sqlalchemy, httpx, ...: every service verb says which extra."""
    for args in (["serve", "--db", f"sqlite:///{tmp_path}/a.db"],
                 ["tokens", "create", "--scope", "admin", "--name", "ops", "--db",
                  f"sqlite:///{tmp_path}/a.db"],
                 ["submit", "--gpus", "1"], ["jobs"], ["why", "j1"]):
        _one_line_error(_cli(*args, cwd=tmp_path), "pip install 'autoflow[serve]'")
    assert not (tmp_path / "a.db").exists()
