"""Workflow templates: a pipeline described once (YAML, or the same mapping as JSON), run
on a schedule.

    name: recsys                      # the template's name (letters, digits, - _ .)
    schedule: nightly                 # or {every: 24h, at: 2h}, or none (ad hoc)
    stages:
      - name: prepare                 # unique within the template
        num_gpus: 0                   # the job fields of autoflow's normalized CSV:
        cpu_milli: 16000              # num_gpus, gpu_milli, gpu_types, kind, qos,
        duration_hint_s: 1800         # cpu_milli, memory_mib, user, slo_s
      - name: train
        num_gpus: 8
        depends_on: [prepare]         # stage names of this template
        duration_hint_s: 14400
        entrypoint: python train.py --epochs 3   # what it runs under the Ray executor
        runtime_env: {env_vars: {DATA: /data/today}}   # (optional, both)
      - name: serve
        kind: inference
        replicas: 2                   # as many jobs, each depending on the same stages
        gpu_milli: 500
        slo_s: 60
        depends_on: [train]
        duration_hint_s: 21600

A run of the template (``Template.jobs``) is one job per stage (``replicas`` jobs for a
stage with replicas), all with ``workflow_id`` = the run's id and ``group`` =
``NAME/STAGE`` (so the history estimator learns each stage's durations), submitted
together: the scheduler core holds each stage until the stages it depends on have
succeeded. ``duration_hint_s`` is what the stage is expected to take: the service takes
it as the job's ``duration_estimate_s``; a simulated run (``expand``) draws the true
duration around it (log-normal, ``duration_sigma``, default 0.3, seeded). Every error
names the file, the stage and the field.

``entrypoint`` (a command, or ``module:function``) and ``runtime_env`` (``env_vars``,
``working_dir``, ``pip``) are what a stage's jobs run when the service executes on Ray
(``autoflow serve --executor ray``), as for a job of ``POST /v1/jobs``; they are checked
here as the service checks them. A simulated run models only a stage's resources and
duration, so ``expand`` says that it leaves them out of the CSV.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .job import INFERENCE, KINDS, TRAINING, WHOLE_GPU, Job
from .limits import MAX_DURATION_S

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_STAGES = 100
MAX_REPLICAS = 64
MAX_FILE_BYTES = 1 << 20
JOB_FIELDS = {"num_gpus": int, "gpu_milli": int, "cpu_milli": int, "memory_mib": int,
              "kind": str, "qos": str, "user": str, "slo_s": float, "gpu_types": list}
RUN_FIELDS = ("entrypoint", "runtime_env")  # what a stage runs on Ray (service only)
RUNTIME_ENV_KEYS = {"env_vars": dict, "working_dir": str, "pip": list}
STAGE_FIELDS = set(JOB_FIELDS) | {"name", "depends_on", "replicas", "duration_hint_s",
                                  "duration_sigma", *RUN_FIELDS}
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Stage:
    name: str
    fields: dict  # job fields (JOB_FIELDS)
    depends_on: tuple[str, ...] = ()
    replicas: int = 1
    duration_hint_s: float | None = None
    duration_sigma: float = 0.3
    run: dict | None = None  # its entrypoint and runtime_env (RUN_FIELDS), if any

    def job_ids(self, run: str) -> list[str]:
        base = f"{run}-{self.name}"
        return [base] if self.replicas == 1 else [f"{base}-{r}" for r in range(self.replicas)]


@dataclass(frozen=True)
class Template:
    name: str
    stages: tuple[Stage, ...]
    every_s: float | None = None  # the schedule's period; None: ad hoc
    at_s: float = 0.0  # offset of each run within its period
    origin: str = "workflow"

    def jobs(self, run: str, submit_time: float, durations: dict[str, float] | None = None
             ) -> list[Job]:
        """The jobs of one run ``run`` (its workflow id) submitted at ``submit_time``;
        ``durations`` (job id -> seconds) sets true durations (a simulated run), else
        they are unknown and each hint is the job's ``duration_estimate_s``."""
        ids = {s.name: s.job_ids(run) for s in self.stages}
        out = []
        for s in self.stages:
            deps = tuple(j for d in s.depends_on for j in ids[d])
            for jid in ids[s.name]:
                f = dict(s.fields)
                extra = {}
                if s.duration_hint_s is not None:
                    extra["duration_estimate_s"] = s.duration_hint_s
                out.append(Job(jid, float(submit_time),
                               None if durations is None else durations[jid],
                               num_gpus=f.get("num_gpus", 1),
                               gpu_milli=f.get("gpu_milli", WHOLE_GPU),
                               gpu_types=tuple(f.get("gpu_types", ())),
                               kind=f.get("kind", TRAINING), qos=f.get("qos", ""),
                               cpu_milli=f.get("cpu_milli", 0),
                               memory_mib=f.get("memory_mib", 0), user=f.get("user", ""),
                               group=f"{self.name}/{s.name}", slo_s=f.get("slo_s"),
                               extra=extra, workflow_id=run, depends_on=deps))
        return out


def load(path: str | Path) -> Template:
    """A template from a YAML (or JSON) file."""
    return parse(read(path), str(path))


def read(path: str | Path):
    """What a YAML (or JSON) file holds, unchecked (``parse`` checks a template)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such workflow file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_FILE_BYTES:,} bytes")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from e


def parse_span(text, where: str) -> float:
    if isinstance(text, int | float) and not isinstance(text, bool) and text > 0:
        return float(text)
    m = _SPAN.match(str(text).strip())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"{where}: a duration such as 24h, 30m, 7d or seconds, got {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse(data, origin: str = "workflow") -> Template:
    """A template from its mapping; a ConfigError names ``origin``, the stage and the
    field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping with 'name' and 'stages'")
    unknown = set(data) - {"name", "schedule", "stages"}
    if unknown:
        raise ConfigError(f"{origin}: unknown field {min(unknown)!r} (fields: name, "
                          f"schedule, stages)")
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{origin} field 'name': letters, digits, '-', '_', '.' (at most "
                          f"100), got {name!r}")
    every, at = _schedule(data.get("schedule"), f"{origin} field 'schedule'")
    stages_in = data.get("stages")
    if not isinstance(stages_in, list) or not stages_in:
        raise ConfigError(f"{origin} field 'stages': a non-empty list of stages")
    if len(stages_in) > MAX_STAGES:
        raise ConfigError(f"{origin} field 'stages': at most {MAX_STAGES} stages, got "
                          f"{len(stages_in)}")
    stages: list[Stage] = []
    seen: set[str] = set()
    for i, s in enumerate(stages_in):
        stage = _stage(s, f"{origin} stages[{i}]", seen)
        seen.add(stage.name)
        stages.append(stage)
    return Template(name, tuple(stages), every, at, origin)


def _schedule(s, where: str) -> tuple[float | None, float]:
    if s is None or s == "none":
        return None, 0.0
    if s == "nightly":
        return 86400.0, 7200.0  # every day at 02:00 of the run's clock
    if s == "hourly":
        return 3600.0, 0.0
    if isinstance(s, dict) and set(s) <= {"every", "at"} and "every" in s:
        every = parse_span(s["every"], f"{where}.every")
        at = parse_span(s["at"], f"{where}.at") if s.get("at") not in (None, 0) else 0.0
        if at >= every:
            raise ConfigError(f"{where}.at: must be less than every ({every:g} s), got "
                              f"{at:g} s")
        return every, at
    raise ConfigError(f"{where}: nightly, hourly, none or {{every: 24h, at: 2h}}, got {s!r}")


def _run_fields(s: dict, where: str) -> dict:
    """The stage's ``entrypoint`` and ``runtime_env``, checked as ``POST /v1/jobs`` checks
    them (``execution.entrypoints``)."""
    from .execution.entrypoints import check_env, parse_entrypoint

    out = {}
    entry = s.get("entrypoint")
    if entry is not None:
        try:
            parse_entrypoint(entry)
        except ValueError as e:
            raise ConfigError(f"{where} field 'entrypoint': {e}") from None
        out["entrypoint"] = entry
    renv = s.get("runtime_env")
    if renv is not None:
        if not isinstance(renv, dict):
            raise ConfigError(f"{where} field 'runtime_env': a mapping of env_vars, "
                              f"working_dir, pip; got {renv!r}")
        for k, v in renv.items():
            typ = RUNTIME_ENV_KEYS.get(k)
            if typ is None:
                raise ConfigError(f"{where} field 'runtime_env.{k}': unknown (env_vars, "
                                  f"working_dir, pip)")
            if not isinstance(v, typ):
                raise ConfigError(f"{where} field 'runtime_env.{k}': expected "
                                  f"{typ.__name__}, got {v!r}")
        try:
            check_env(renv.get("env_vars"))
        except ValueError as e:
            raise ConfigError(f"{where} field 'runtime_env.env_vars': "
                              f"{str(e).removeprefix('env: ')}") from None
        if not all(isinstance(x, str) for x in renv.get("pip", [])):
            raise ConfigError(f"{where} field 'runtime_env.pip': a list of requirement "
                              f"strings")
        out["runtime_env"] = renv
    return out


def _stage(s, where: str, earlier: set[str]) -> Stage:
    if not isinstance(s, dict):
        raise ConfigError(f"{where}: a stage is a mapping with at least 'name'")
    name = s.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where} field 'name': letters, digits, '-', '_', '.', got {name!r}")
    where = f"{where} ({name})"
    unknown = set(s) - STAGE_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field {min(unknown)!r}")
    if name in earlier:
        raise ConfigError(f"{where} field 'name': a stage of that name came before")
    deps = s.get("depends_on", [])
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ConfigError(f"{where} field 'depends_on': a list of stage names")
    for d in deps:
        if d not in earlier:
            raise ConfigError(f"{where} field 'depends_on': {d!r} is not a stage listed "
                              f"before this one")
    fields = {}
    for k, typ in JOB_FIELDS.items():
        if k not in s or s[k] is None:
            continue
        v = s[k]
        ok = (isinstance(v, typ) and not isinstance(v, bool)) or (
            typ is float and isinstance(v, int) and not isinstance(v, bool))
        if not ok:
            raise ConfigError(f"{where} field {k!r}: expected {typ.__name__}, got {v!r}")
        fields[k] = v
    for i, g in enumerate(fields.get("gpu_types", ())):
        if not isinstance(g, str) or not g.strip():
            raise ConfigError(f"{where} field 'gpu_types[{i}]': a GPU type is a non-empty "
                              f"string (such as A100), got {g!r}")
    if fields.get("kind", TRAINING) not in KINDS:
        raise ConfigError(f"{where} field 'kind': training or inference, got "
                          f"{fields['kind']!r}")
    replicas = s.get("replicas", 1)
    if type(replicas) is not int or not 1 <= replicas <= MAX_REPLICAS:
        raise ConfigError(f"{where} field 'replicas': a whole number in [1, {MAX_REPLICAS}], "
                          f"got {replicas!r}")
    hint = s.get("duration_hint_s")
    if hint is not None:
        hint = parse_span(hint, f"{where} field 'duration_hint_s'")
        if hint > MAX_DURATION_S:
            raise ConfigError(f"{where} field 'duration_hint_s': at most {MAX_DURATION_S:g}")
    sigma = s.get("duration_sigma", 0.3)
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 <= sigma <= 3:
        raise ConfigError(f"{where} field 'duration_sigma': a number in [0, 3], got {sigma!r}")
    stage = Stage(name, fields, tuple(deps), replicas, hint, float(sigma),
                  _run_fields(s, where) or None)
    try:  # the job fields checked as a job would be (GPU shares, sizes)
        stage_job = Template("t", (Stage(name, fields),)).jobs("check", 0.0)[0]
    except ValueError as e:
        raise ConfigError(f"{where}: {str(e).removeprefix('job check-' + name + ': ')}") from e
    if stage_job.kind == INFERENCE and "slo_s" in fields and fields["slo_s"] <= 0:
        raise ConfigError(f"{where} field 'slo_s': must be > 0")
    return stage


def expand(template: Template, runs: int, seed: int = 0, start: float = 0.0) -> list[Job]:
    """``runs`` runs of the template on its schedule (an ad-hoc template: one run after
    another's hints' critical path), true durations drawn around the hints (a stage
    without a hint: one hour), for simulation. Run ``k`` is ``NAME-k``."""
    if not 1 <= runs <= 100_000:
        raise ConfigError(f"runs: must be in [1, 100000], got {runs}")
    rng = np.random.default_rng([seed, 31])
    every = template.every_s or sum(s.duration_hint_s or 3600.0 for s in template.stages)
    out = []
    for k in range(runs):
        run = f"{template.name}-{k}"
        t = start + template.at_s + k * every
        durations = {}
        for s in template.stages:
            hint = s.duration_hint_s or 3600.0
            for jid in s.job_ids(run):
                d = hint * math.exp(s.duration_sigma * rng.standard_normal()) \
                    if s.duration_sigma else hint
                durations[jid] = float(min(max(d, 1.0), MAX_DURATION_S))
        out += template.jobs(run, t, durations)
    return out

