"""Pipelines: workflows of dependent jobs, learned from a trace and sampled whole.

A trace's *workflows* (``autoflow.workflow``) are found as the connected groups of jobs
that share a ``workflow_id`` or are joined by a ``depends_on`` (a dependency on a job
that is not in the trace is ignored, as ``workflow.within`` does); the jobs in none of
them are the *independent* jobs, which the attribute and arrival models learn as before
(``generators.generator``).

What is learned (``PipelineModel.fit``):

* the **shapes**: a workflow's stages in a canonical order (sorted by group, kind and
  job id, then topologically, parents first), each stage labelled by its ``group`` and
  ``kind``, and its edges as pairs of stage indices (always parent before child, so a
  shape can have no cycle). Workflows with the same labels and edges share a shape;
  its frequency is the number of workflows that had it. (Two stages with the same label
  but different parents may order differently in two runs of one template: those runs
  then count as two shapes.)
* for every shape, the **observed stage rows** of each of its workflows: duration, GPU
  count, share and types, kind, QoS, CPU, memory, SLO and user (pooled as in
  ``generators.table``), and the stage's submit offset from the workflow's first
  submission.
* the **pipeline share**: the share of the trace's jobs (known durations) that are
  stages, and the **arrivals of pipelines**: an ``ArrivalModel`` of the workflows' first
  submissions (their own rate profile: nightly pipelines stay nightly). With fewer than
  two workflow starts, or all at one instant, there is none (see sampling).

Sampling (``PipelineModel.plan``, ``starts``, ``build``; ``FittedGenerator.sample``):

1. ``n`` jobs are asked for: whole pipelines fill ``share * n`` of them. Shapes are drawn
   by their frequency one after the other; a drawn pipeline is kept while the total
   stays within ``n`` and adding it leaves the total no farther from ``share * n`` than
   not adding it; the first that fails ends the draw (not kept). The independent jobs
   fill the rest, so a sample has exactly ``n`` jobs, as ``sample(n)`` always promised.
   (For small ``n`` that can be no pipeline at all: when ``share * n`` is under half the
   first drawn pipeline's jobs.) Over many samples the share of stages is ``share``.
2. Each stage of a drawn pipeline copies the whole row (all its attributes together,
   so GPU count, share, types, CPU and memory stay a combination that was seen) of the
   same stage of one workflow of that shape drawn uniformly, independently for every
   stage. Its duration is multiplied by ``exp(N(0, DURATION_JITTER))`` (a log-normal
   jitter with median 1, sigma 0.1: about +-10%, so that copies of one observed run
   differ while the per-stage median is kept), and clipped to [1 s, ``MAX_DURATION_S``]
   as the table's durations are. The submit offsets of all stages come together from
   one workflow of the shape (the timing of a run is kept whole).
3. Pipeline starts are drawn from the pipelines' arrival model (scaled by
   ``load_scale`` like the independent jobs'), or, without one, uniformly over the
   independent jobs' span (at that span's start when there are no independent jobs).
   Stage ``j`` of the ``k``-th pipeline (in order of start) is job ``syn-pK-J`` of
   workflow ``syn-pK``; its ``depends_on`` names its parents in the same pipeline.

Stored (``to_arrays``/``from_arrays``) as numeric arrays, string codes into one string
table and a JSON object, without pickles, in the generator's ``.npz``; every array is
checked (sizes, ranges, codes, edges that go forward) before use. At most ``MAX_ROWS``
stage rows are kept (the latest workflows; the earlier ones are dropped and counted)
and workflows of more than ``MAX_STAGES`` stages are left out (counted), as are
workflows with a stage of unknown duration.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from autoflow import workflow
from autoflow.errors import ConfigError
from autoflow.job import KINDS, WHOLE_GPU, Job
from autoflow.limits import MAX_DURATION_S

from . import arrivals as arrivals_mod
from .arrivals import ArrivalModel
from .table import pooled_user

DURATION_JITTER = 0.1  # sigma of the log-normal factor on sampled stage durations
MAX_ROWS = 500_000  # stage rows kept (the latest workflows)
MAX_STAGES = 1_000  # stages of one workflow; larger workflows are left out
STREAM = 0x70697065  # the pipelines' random stream: seeded by (seed, this)
PREFIX = "pipelines."
ID_PREFIX = "syn-p"  # workflow ids syn-p0, syn-p1, ...; stage ids syn-p0-0, ...
NUMERIC = ("duration", "offset", "slo_s")  # float rows
INTEGER = ("num_gpus", "gpu_milli", "cpu_milli", "memory_mib")  # integer rows
CODED = ("qos", "user", "gpu_types")  # rows as codes into the string table
MAX_INT = 2**62  # GPU counts, CPU and memory beyond this are kept as this


def split(jobs: list[Job]) -> tuple[list[list[Job]], list[Job]]:
    """The workflows of ``jobs`` (each a list of its jobs, in the order given) and the
    independent jobs, in the order given."""
    index = {j.job_id: i for i, j in enumerate(jobs)}
    parent = list(range(len(jobs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first: dict[str, int] = {}
    for i, j in enumerate(jobs):
        if j.workflow_id:
            union(i, first.setdefault(j.workflow_id, i))
        for p in j.depends_on:
            if p in index:
                union(i, index[p])
    members: dict[int, list[int]] = {}
    for i in range(len(jobs)):
        members.setdefault(root(i), []).append(i)
    flows, independent = [], []
    for group in members.values():
        js = [jobs[i] for i in group]
        if len(js) > 1 or js[0].workflow_id or any(p in index for p in js[0].depends_on):
            flows.append(js)
        else:
            independent.append(group[0])
    return flows, [jobs[i] for i in sorted(independent)]


def canonical(flow: list[Job]) -> list[Job] | None:
    """The stages of one workflow in the canonical order (module docstring); None when
    its dependencies form a cycle."""
    order = workflow.topological(sorted(flow, key=lambda j: (j.group, j.kind, j.job_id)))
    return order if len(order) == len(flow) else None


def edges_of(stages: list[Job]) -> tuple[tuple[int, int], ...]:
    pos = {j.job_id: k for k, j in enumerate(stages)}
    return tuple(sorted({(pos[p], k) for k, j in enumerate(stages) for p in j.depends_on
                         if p in pos}))


def count(jobs) -> dict:
    """Workflows, their jobs and stage counts in a workload (for reports and the CLI)."""
    flows, independent = split(list(jobs))
    n = sum(len(f) for f in flows)
    return {"workflows": len(flows), "stages": n, "independent": len(independent),
            "job_share": n / max(1, n + len(independent)),
            "stage_counts": dict(sorted(Counter(len(f) for f in flows).items()))}


@dataclass
class PipelineModel:
    """The learned pipelines (module docstring); arrays over shapes, labels and rows."""

    stages: np.ndarray  # (S,) stages of each shape
    counts: np.ndarray  # (S,) workflows seen with each shape
    n_edges: np.ndarray  # (S,) edges of each shape
    edges: np.ndarray  # (E, 2) parent, child stage indices, shape after shape
    group: np.ndarray  # (sum stages,) codes of each stage label's group
    kind: np.ndarray  # (sum stages,) codes of each stage label's kind
    rows: dict  # name -> (sum counts * stages,) per stage row, shape, workflow, stage
    strings: list  # the string table the codes index
    share: float  # share of the trace's jobs (known durations) that are stages
    arrivals: ArrivalModel | None  # of the workflows' first submissions
    jitter: float = DURATION_JITTER
    left_out: dict = field(default_factory=dict)  # reason -> workflows not learned

    # -- fitting ----------------------------------------------------------------------
    @classmethod
    def fit(cls, flows: list[list[Job]], independent_used: int,
            top: set[str]) -> PipelineModel | None:
        """From the workflows of a trace (``split``) and the number of its independent
        jobs with a known duration; None when no workflow could be learned."""
        left: Counter = Counter()
        runs = []  # (start, canonical stages)
        for flow in flows:
            if any(j.duration is None for j in flow):
                left["unknown_duration"] += 1
            elif len(flow) > MAX_STAGES:
                left["too_many_stages"] += 1
            elif (stages := canonical(flow)) is None:
                left["cycle"] += 1
            else:
                runs.append((min(j.submit_time for j in flow), stages))
        runs.sort(key=lambda r: r[0])
        total = sum(len(s) for _, s in runs)
        while total > MAX_ROWS:  # keep the latest workflows
            total -= len(runs.pop(0)[1])
            left["beyond_max_rows"] += 1
        if not runs:
            return None
        strings: dict[str, int] = {k: i for i, k in enumerate(KINDS)}

        def code(s: str) -> int:
            return strings.setdefault(s, len(strings))

        by_shape: dict[tuple, list] = {}
        for start, stages in runs:
            key = (tuple((j.group, j.kind) for j in stages), edges_of(stages))
            by_shape.setdefault(key, []).append((start, stages))
        keys = sorted(by_shape, key=lambda k: (-len(by_shape[k]), k))
        rows: dict[str, list] = {k: [] for k in (*NUMERIC, *INTEGER, *CODED)}
        group, kind, edges = [], [], []
        for key in keys:
            labels, es = key
            group += [code(g) for g, _ in labels]
            kind += [code(k) for _, k in labels]
            edges += es
            for start, stages in by_shape[key]:
                for j in stages:  # within the ranges that from_arrays accepts
                    rows["duration"].append(float(j.duration))
                    rows["offset"].append(min(float(j.submit_time - start), MAX_DURATION_S))
                    slo = float(j.slo_s or 0.0)
                    rows["slo_s"].append(min(slo, MAX_DURATION_S) if slo > 0 else 0.0)
                    for name in INTEGER:
                        rows[name].append(min(int(getattr(j, name)), MAX_INT))
                    rows["qos"].append(code(j.qos))
                    rows["user"].append(code(pooled_user(j.user, top)))
                    rows["gpu_types"].append(code("|".join(j.gpu_types)))
        starts = np.array([s for s, _ in runs])
        arr = ArrivalModel().fit(starts) if starts.size >= 2 and np.ptp(starts) > 0 else None
        return cls(
            stages=np.array([len(k[0]) for k in keys], dtype=np.int64),
            counts=np.array([len(by_shape[k]) for k in keys], dtype=np.int64),
            n_edges=np.array([len(k[1]) for k in keys], dtype=np.int64),
            edges=np.array(edges, dtype=np.int64).reshape(-1, 2),
            group=np.array(group, dtype=np.int64), kind=np.array(kind, dtype=np.int64),
            rows={k: np.array(v, dtype=np.float64 if k in NUMERIC else np.int64)
                  for k, v in rows.items()},
            strings=list(strings), share=total / max(1, total + independent_used),
            arrivals=arr, left_out=dict(left))

    def describe(self) -> dict:
        return {"shapes": int(self.stages.size), "workflows": int(self.counts.sum()),
                "stages": int(self.rows["duration"].size), "job_share": round(self.share, 4),
                "duration_jitter": self.jitter, "own_arrivals": self.arrivals is not None,
                "left_out": dict(self.left_out)}

    def shape_labels(self) -> list[tuple[tuple, tuple]]:
        """Each shape as ``((group, kind) per stage, edges)``, as ``fit`` keys them."""
        out, lab, e = [], 0, 0
        for m, ne in zip(self.stages.tolist(), self.n_edges.tolist(), strict=True):
            labels = tuple((self.strings[g], self.strings[k]) for g, k in
                           zip(self.group[lab:lab + m], self.kind[lab:lab + m], strict=True))
            out.append((labels, tuple(map(tuple, self.edges[e:e + ne].tolist()))))
            lab, e = lab + m, e + ne
        return out

    # -- sampling ---------------------------------------------------------------------
    def plan(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The shapes of the pipelines of a sample of ``n`` jobs (module docstring, 1)."""
        p = self.counts / self.counts.sum()
        target = self.share * n
        mean = float(p @ self.stages)
        picked, total = [], 0
        while True:
            size = max(16, int((target - total) / mean) + 16)
            chunk = rng.choice(self.stages.size, size=size, p=p)
            ends = total + np.cumsum(self.stages[chunk])
            begins = ends - self.stages[chunk]
            fail = np.flatnonzero((ends > n) | (begins + ends > 2 * target))
            if fail.size:
                picked.append(chunk[:fail[0]])
                return np.concatenate(picked)
            picked.append(chunk)
            total = int(ends[-1])

    def starts(self, k: int, rng: np.random.Generator, load_scale: float,
               span: tuple[float, float]) -> np.ndarray:
        """``k`` pipeline starts, in time order (module docstring, 3)."""
        if k == 0:
            return np.zeros(0)
        if self.arrivals is not None:
            return self.arrivals.sample(k, rng, load_scale)
        return np.sort(rng.uniform(span[0], span[1], size=k))

    def build(self, shapes: np.ndarray, starts: np.ndarray,
              rng: np.random.Generator) -> list[Job]:
        """The stages of the pipelines ``shapes`` starting at ``starts`` (module
        docstring, 2): the ``k``-th is workflow ``syn-pK``."""
        first_row = np.r_[0, np.cumsum(self.counts * self.stages)]
        first_label = np.r_[0, np.cumsum(self.stages)]
        first_edge = np.r_[0, np.cumsum(self.n_edges)]
        # each pipeline's stage rows and timing donor, drawn shape by shape (in order)
        rows: dict[int, np.ndarray] = {}
        timing: dict[int, np.ndarray] = {}
        jitter: dict[int, np.ndarray] = {}
        for s in np.unique(shapes):
            which = np.flatnonzero(shapes == s)
            m, c = int(self.stages[s]), int(self.counts[s])
            donors = rng.integers(c, size=(which.size, m))
            t_donor = rng.integers(c, size=which.size)
            noise = np.exp(rng.normal(0.0, self.jitter, size=(which.size, m)))
            stage = first_row[s] + np.arange(m)  # the rows of the shape's first workflow
            for i, w in enumerate(which):
                rows[w] = stage + donors[i] * m
                timing[w] = stage + t_donor[i] * m
                jitter[w] = noise[i]
        r, st = self.rows, self.strings
        jobs = []
        for w, s in enumerate(shapes.tolist()):
            wf = f"{ID_PREFIX}{w}"
            ids = [f"{wf}-{k}" for k in range(int(self.stages[s]))]
            parents: list[list[str]] = [[] for _ in ids]
            for a, b in self.edges[first_edge[s]:first_edge[s + 1]].tolist():
                parents[b].append(ids[a])
            for k, (x, t) in enumerate(zip(rows[w].tolist(), timing[w].tolist(), strict=True)):
                kind = st[self.kind[first_label[s] + k]]
                slo = float(r["slo_s"][x])
                types = st[r["gpu_types"][x]]
                qos, user = st[r["qos"][x]], st[r["user"][x]]
                jobs.append(Job(
                    job_id=ids[k], submit_time=float(starts[w] + r["offset"][t]),
                    duration=float(np.clip(r["duration"][x] * jitter[w][k], 1.0,
                                           MAX_DURATION_S)),
                    num_gpus=int(r["num_gpus"][x]), gpu_milli=int(r["gpu_milli"][x]),
                    gpu_types=tuple(types.split("|")) if types else (), kind=kind,
                    qos="" if qos == "none" else qos, cpu_milli=int(r["cpu_milli"][x]),
                    memory_mib=int(r["memory_mib"][x]),
                    user="" if user == "none" else user,
                    group=st[self.group[first_label[s] + k]],
                    slo_s=slo if slo > 0 else None, workflow_id=wf,
                    depends_on=tuple(parents[k])))
        return jobs

    # -- the safe file ----------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict]:
        """``(arrays, meta)``: numeric arrays and one string array (keys under
        ``pipelines.``) and a JSON-able object, for the generator's ``.npz``."""
        arrays = {f"{PREFIX}stages": self.stages, f"{PREFIX}counts": self.counts,
                  f"{PREFIX}n_edges": self.n_edges, f"{PREFIX}edges": self.edges,
                  f"{PREFIX}group": self.group, f"{PREFIX}kind": self.kind,
                  f"{PREFIX}strings": np.asarray(self.strings, dtype=str)}
        arrays |= {f"{PREFIX}row.{k}": v for k, v in self.rows.items()}
        meta = {"share": self.share, "jitter": self.jitter, "left_out": self.left_out,
                "arrivals": None}
        if self.arrivals is not None:
            a = self.arrivals
            arrays |= {f"{PREFIX}arrivals.rate": a.rate, f"{PREFIX}arrivals.cum": a.cum,
                       f"{PREFIX}arrivals.gaps": a.gaps}
            meta["arrivals"] = {"origin": a.origin, "period": a.period, "bins": a.bins,
                                "n_fitted": a.n_fitted}
        return arrays, meta

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict, what: str) -> PipelineModel:
        """The model from ``to_arrays``' parts, every part checked before use; a
        ConfigError naming ``what`` (the file) and the part otherwise."""
        what = f"{what}: pipelines"
        if not isinstance(meta, dict):
            raise ConfigError(f"{what}: its description must be an object")
        share, jitter, left = meta.get("share"), meta.get("jitter"), meta.get("left_out")
        if not (_number(share) and 0 < share <= 1 and _number(jitter) and 0 <= jitter <= 1):
            raise ConfigError(f"{what}: share must be in (0, 1] and jitter in [0, 1]")
        if not (isinstance(left, dict) and all(isinstance(k, str) and _whole(v)
                                               for k, v in left.items())):
            raise ConfigError(f"{what}: left_out must map reasons to counts")

        def ints(name: str, ndim: int = 1, lo: int = 0, hi: float = np.inf) -> np.ndarray:
            a = _member(arrays, name, what)
            if a.dtype.kind not in "iu" or a.ndim != ndim or \
                    (a.size and (a.min() < lo or a.max() > hi)):
                raise ConfigError(f"{what}: {name} must be a {ndim}-d integer array of "
                                  f"values in [{lo}, {hi:g}]")
            return a.astype(np.int64)

        def floats(name: str, hi: float) -> np.ndarray:
            a = _member(arrays, name, what)
            if a.dtype.kind not in "fiu" or a.ndim != 1 or not np.isfinite(a).all() or \
                    (a.size and (a.min() < 0 or a.max() > hi)):
                raise ConfigError(f"{what}: {name} must be finite numbers in [0, {hi:g}]")
            return a.astype(np.float64)

        strings = _member(arrays, "strings", what)
        if strings.dtype.kind != "U" or strings.ndim != 1 or strings.size < len(KINDS):
            raise ConfigError(f"{what}: strings must be a 1-d string array")
        strings = [str(x) for x in strings]
        top = len(strings) - 1
        stages, counts = ints("stages", lo=1, hi=MAX_STAGES), ints("counts", lo=1, hi=MAX_ROWS)
        n_edges = ints("n_edges", hi=MAX_STAGES**2)
        if not (stages.size >= 1 and stages.shape == counts.shape == n_edges.shape):
            raise ConfigError(f"{what}: stages, counts and n_edges must list the same "
                              "shapes (at least one)")
        labels, n_rows = int(stages.sum()), int((stages * counts).sum())
        if n_rows > MAX_ROWS:
            raise ConfigError(f"{what}: more than {MAX_ROWS:,} stage rows")
        group, kind = ints("group", hi=top), ints("kind", hi=top)
        if group.shape != (labels,) or kind.shape != (labels,) or \
                any(strings[k] not in KINDS for k in kind.tolist()):
            raise ConfigError(f"{what}: group and kind must label every stage of every "
                              f"shape ({labels}), kinds among {', '.join(KINDS)}")
        edges = ints("edges", ndim=2)
        if edges.shape != (int(n_edges.sum()), 2):
            raise ConfigError(f"{what}: edges must be {int(n_edges.sum())} x 2")
        e = 0
        for s, (m, ne) in enumerate(zip(stages.tolist(), n_edges.tolist(), strict=True)):
            for a, b in edges[e:e + ne].tolist():
                if not 0 <= a < b < m:
                    raise ConfigError(f"{what}: shape {s}: edge {a} -> {b} must go forward "
                                      f"between its {m} stages (parents first)")
            e += ne
        rows = {"duration": floats("row.duration", MAX_DURATION_S),
                "offset": floats("row.offset", MAX_DURATION_S),
                "slo_s": floats("row.slo_s", MAX_DURATION_S),
                "num_gpus": ints("row.num_gpus", hi=MAX_INT),
                "gpu_milli": ints("row.gpu_milli", hi=WHOLE_GPU),
                "cpu_milli": ints("row.cpu_milli", hi=MAX_INT),
                "memory_mib": ints("row.memory_mib", hi=MAX_INT)}
        rows |= {k: ints(f"row.{k}", hi=top) for k in CODED}
        if any(v.shape != (n_rows,) for v in rows.values()):
            raise ConfigError(f"{what}: every row array must hold {n_rows} stage rows")
        if ((rows["num_gpus"] > 1) & (rows["gpu_milli"] != WHOLE_GPU)).any():
            raise ConfigError(f"{what}: only single-GPU stages may share a GPU")
        a = meta.get("arrivals")
        arr = None
        if a is not None:
            if not isinstance(a, dict):
                raise ConfigError(f"{what}: arrivals must be an object or null")
            arr = arrivals_mod.restore(a, *(floats(f"arrivals.{k}", np.inf)
                                            for k in ("rate", "cum", "gaps")),
                                       f"{what}: arrivals")
        return cls(stages, counts, n_edges, edges, group, kind, rows, strings, float(share),
                   arr, float(jitter), {k: int(v) for k, v in left.items()})


def _member(arrays: dict, name: str, what: str) -> np.ndarray:
    if f"{PREFIX}{name}" not in arrays:
        raise ConfigError(f"{what}: the array {name} is missing")
    return arrays[f"{PREFIX}{name}"]


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x)


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
