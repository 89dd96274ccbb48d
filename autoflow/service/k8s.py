"""The Kubernetes scheduler extender: kube-scheduler asks autoflow where a pod may go.

kube-scheduler (``KubeSchedulerConfiguration.extenders``, see ``docs/k8s-extender.md`` and
``deploy/k8s/kube-scheduler-config.yaml``) POSTs to ``/k8s/filter``, ``/k8s/prioritize``,
``/k8s/bind`` and ``/k8s/preempt`` the JSON of its Go types
(``k8s.io/kube-scheduler/extender/v1``): the types have no JSON tags, so their keys are
the capitalised Go field names (``Pod``, ``NodeNames``, ``FailedNodes``, ``Host``,
``Score`` ...), while the Kubernetes objects inside them (``Pod``, the ``Nodes`` list's
items, preemption victims) are ordinary Kubernetes JSON (``metadata``, ``spec``,
``status``, ``items``). Like Go's decoder, keys are matched case-insensitively (an exact
match first).

What a pod needs, as an autoflow job:

- GPUs: the pod's ``nvidia.com/gpu`` (requests, else limits), summed over its containers,
  the largest init container's if larger, plus ``spec.overhead``;
- CPU and memory: the same over ``cpu`` and ``memory`` (Kubernetes quantities: ``500m``,
  ``2``, ``4Gi``, ``512Mi``, ``1G``, ``1e3`` ...), rounded up to millicores and MiB;
- annotations: ``autoflow.io/gpu-milli`` (1..1000: the share of one GPU the pod needs; with
  ``nvidia.com/gpu`` 0 or 1), ``autoflow.io/gpu-types`` (allowed GPU types, comma
  separated), ``autoflow.io/kind`` (``training``, the default, or ``inference``: never
  preempted) and ``autoflow.io/duration-estimate-s``.

A node's GPU type is its label ``autoflow.io/gpu-type``, else ``nvidia.com/gpu.product``
(set by NVIDIA's GPU feature discovery); its capacity is ``status.allocatable``.

Filter answers come from :mod:`autoflow.feasibility` (``node_mask``) on the engine's live
``ClusterState``, under the engine's lock: the same function the simulator and the
policies use. Registered nodes (``POST /v1/clusters``) are judged on what autoflow has
placed on them; with ``nodeCacheCapable`` (``NodeNames``) a node autoflow does not know
fails, unresolvably; with full ``Nodes`` an unregistered node is judged on the capacity
its Node object declares. Prioritize scores the serving policy's placer (best-fit:
least residual) 1..10 over the nodes that fit (0: does not fit). Bind records the pod as
a running job on the node (``Engine.bind_external``) and, with ``--k8s-api``, POSTs the
``Binding`` to the API server. Preempt keeps the victims the serving policy agrees to
preempt (training jobs that rank behind the pod, worst-ranked first, no more than the
pod needs), and passes through victims that are not autoflow's.

Payload errors are answered in the result's ``Error`` (HTTP 200, so that kube-scheduler
shows the message), naming the field; a body that is not a JSON object, and bad input to
prioritize and preempt (whose results have no ``Error``), get a 400 with ``{"Error"}``.
The routes are served only on the extender's own mutual-TLS listener
(``autoflow serve --extender-port``; :func:`extender_app`), never on the API port.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..cluster import ClusterSpec, Node
from ..core.jobstate import RUNNING, JobState
from ..feasibility import gpu_mask, node_mask
from ..job import KINDS, TRAINING, WHOLE_GPU, Job
from ..limits import MAX_CPU_MILLI, MAX_DURATION_S, MAX_GPUS_PER_NODE, MAX_MEMORY_MIB
from ..state import ClusterState, Req
from .limit_body import LimitBody
from .store import Conflict

log = logging.getLogger("autoflow.service.k8s")

GPU = "nvidia.com/gpu"
RESOURCES = (GPU, "cpu", "memory")
ANN_MILLI = "autoflow.io/gpu-milli"
ANN_TYPES = "autoflow.io/gpu-types"
ANN_KIND = "autoflow.io/kind"
ANN_ESTIMATE = "autoflow.io/duration-estimate-s"
LABEL_TYPES = ("autoflow.io/gpu-type", "nvidia.com/gpu.product")
UNKNOWN_TYPE = "unknown"
MAX_SCORE = 10  # extenderv1.MaxExtenderPriority
EXTENDER_MAX_BODY = 64 << 20  # a full NodeList of thousands of nodes
PODS_KEPT = 20_000  # pods seen by filter / prioritize, by UID, for bind
MAX_JOB_GPUS = 100_000


class BadPayload(ValueError):
    """A request kube-scheduler's types would not produce; the message names the field."""


# -- JSON as Go decodes it --------------------------------------------------------------
def _get(obj: dict, key: str, default=None):
    """``obj[key]`` matched as Go's encoding/json does: exact, else case-insensitive."""
    if key in obj:
        return obj[key]
    low = key.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return default


def _obj(v, where: str, required: bool = False) -> dict:
    if v is None:
        if required:
            raise BadPayload(f"{where}: required, got null or nothing")
        return {}
    if not isinstance(v, dict):
        raise BadPayload(f"{where}: expected a JSON object, got {type(v).__name__}")
    return v


def _list(v, where: str) -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        raise BadPayload(f"{where}: expected a JSON array, got {type(v).__name__}")
    return v


def _str(v, where: str, required: bool = False, max_len: int = 253) -> str:
    if v is None or v == "":
        if required:
            raise BadPayload(f"{where}: required, got {v!r}")
        return ""
    if not isinstance(v, str):
        raise BadPayload(f"{where}: expected a string, got {type(v).__name__}")
    if len(v) > max_len:
        raise BadPayload(f"{where}: longer than {max_len} characters")
    return v


def _str_map(v, where: str) -> dict[str, str]:
    m = _obj(v, where)
    for k, x in m.items():
        if not isinstance(x, str):
            raise BadPayload(f"{where}[{k!r}]: expected a string, got {type(x).__name__}")
    return m


# -- quantities ---------------------------------------------------------------------------
_QTY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|"
                  r"[eE][+-]?\d{1,3})?$")
_SUFFIX = {"Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
           "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
           "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
           "P": Decimal("1e15"), "E": Decimal("1e18")}
MAX_QUANTITY = Decimal("1e21")


def parse_quantity(value, where: str) -> Decimal:
    """A Kubernetes resource quantity (``resource.Quantity``'s string form, or a JSON
    number) as an exact non-negative decimal; anything else names ``where``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadPayload(f"{where}: expected a quantity such as '500m', '2' or '4Gi', got "
                         f"{type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadPayload(f"{where}: {value!r} is not a finite quantity")
    text = value if isinstance(value, str) else repr(value)
    m = _QTY.match(text) if len(text) <= 64 else None
    if m is None:
        raise BadPayload(f"{where}: {text[:64]!r} is not a Kubernetes quantity (e.g. '500m', "
                         f"'2', '4Gi', '512Mi', '1G')")
    try:
        number = Decimal(m.group(1))
        suffix = m.group(2) or ""
        q = number * Decimal(10) ** int(suffix[1:]) if suffix[:1] in ("e", "E") \
            else number * _SUFFIX[suffix]
    except InvalidOperation as e:
        raise BadPayload(f"{where}: {text!r} is not a Kubernetes quantity") from e
    if q < 0:
        raise BadPayload(f"{where}: {text!r} is negative")
    if q > MAX_QUANTITY:
        raise BadPayload(f"{where}: {text!r} is out of range")
    return q


def _ceil(q: Decimal) -> int:
    return int(q.to_integral_value(rounding="ROUND_CEILING"))


def _floor(q: Decimal) -> int:
    return int(q.to_integral_value(rounding="ROUND_FLOOR"))


def cpu_milli(q: Decimal) -> int:
    return _ceil(q * 1000)


def memory_mib(q: Decimal) -> int:
    return _ceil(q / (1 << 20))


def _whole(q: Decimal, where: str, text) -> int:
    if q != q.to_integral_value():
        raise BadPayload(f"{where}: {text!r} is not a whole number of GPUs")
    return int(q)


# -- pods ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodReq:
    """What one pod asks for, as autoflow's job fields."""

    namespace: str
    name: str
    uid: str
    num_gpus: int
    gpu_milli: int
    gpu_types: tuple[str, ...]
    cpu_milli: int
    memory_mib: int
    kind: str
    duration_estimate_s: float | None

    @property
    def job_id(self) -> str:
        return job_id_of(self.namespace, self.name, self.uid)

    def job(self, now: float) -> Job:
        extra = {} if self.duration_estimate_s is None else {
            "duration_estimate_s": self.duration_estimate_s}
        return Job(self.job_id, now, None, self.num_gpus, self.gpu_milli, self.gpu_types,
                   self.kind, "", self.cpu_milli, self.memory_mib, self.namespace,
                   extra=extra)

    def spec(self, node: str) -> dict:
        return {"num_gpus": self.num_gpus, "gpu_milli": self.gpu_milli,
                "gpu_types": list(self.gpu_types), "kind": self.kind, "qos": "",
                "cpu_milli": self.cpu_milli, "memory_mib": self.memory_mib,
                "user": self.namespace, "slo_s": None,
                "duration_estimate_s": self.duration_estimate_s,
                "pod": {"namespace": self.namespace, "name": self.name, "uid": self.uid,
                        "node": node}}

    def describe(self) -> str:
        if self.num_gpus == 0:
            gpus = "no GPU"
        elif self.gpu_milli < WHOLE_GPU:
            gpus = f"{self.gpu_milli}/1000 of one GPU"
        else:
            gpus = f"{self.num_gpus} GPU(s)"
        types = f" of type {' or '.join(self.gpu_types)}" if self.gpu_types else ""
        return (f"{gpus}{types}, cpu {self.cpu_milli}m, memory {self.memory_mib}Mi")


def job_id_of(namespace: str, name: str, uid: str) -> str:
    """``k8s.NAMESPACE.NAME.UID8``: readable, and a pod recreated under the same name is
    another job. (A namespace has no dots, so the parts read back unambiguously.)"""
    jid = f"k8s.{namespace}.{name}" + (f".{uid[:8]}" if uid else "")
    if len(jid) > 200:
        digest = hashlib.sha256(f"{namespace}/{name}/{uid}".encode()).hexdigest()[:16]
        jid = f"k8s.{namespace[:60]}.{name[:100]}.{digest}"
    return jid


def _resource(res: dict, key: str, where: str):
    """A container's request for ``key``: ``requests``, else ``limits`` (Kubernetes
    defaults a missing request to the limit)."""
    requests = _obj(_get(res, "requests"), f"{where}.requests")
    if key in requests:
        return requests[key], f"{where}.requests[{key!r}]"
    limits = _obj(_get(res, "limits"), f"{where}.limits")
    if key in limits:
        return limits[key], f"{where}.limits[{key!r}]"
    return None, ""


def _pod_totals(spec: dict, where: str) -> dict[str, Decimal]:
    """The pod's effective request per resource (GPU, cpu, memory): the sum over its
    containers or the largest init container, whichever is larger, plus overhead."""
    totals = dict.fromkeys(RESOURCES, Decimal(0))
    init_max = dict(totals)
    for list_key, agg in (("containers", "sum"), ("initContainers", "max")):
        for i, c in enumerate(_list(_get(spec, list_key), f"{where}.{list_key}")):
            cw = f"{where}.{list_key}[{i}]"
            c = _obj(c, cw)
            res = _obj(_get(c, "resources"), f"{cw}.resources")
            for key in RESOURCES:
                raw, fw = _resource(res, key, f"{cw}.resources")
                if raw is None:
                    continue
                q = parse_quantity(raw, fw)
                if key == GPU:
                    _whole(q, fw, raw)
                if agg == "sum":
                    totals[key] += q
                else:
                    init_max[key] = max(init_max[key], q)
    overhead = _obj(_get(spec, "overhead"), f"{where}.overhead")
    for key in RESOURCES:
        totals[key] = max(totals[key], init_max[key])
        if key in overhead:
            totals[key] += parse_quantity(overhead[key], f"{where}.overhead[{key!r}]")
    return totals


def parse_pod(pod, where: str = "Pod") -> PodReq:
    pod = _obj(pod, where, required=True)
    meta = _obj(_get(pod, "metadata"), f"{where}.metadata")
    name = _str(_get(meta, "name"), f"{where}.metadata.name", required=True)
    namespace = _str(_get(meta, "namespace"), f"{where}.metadata.namespace") or "default"
    uid = _str(_get(meta, "uid"), f"{where}.metadata.uid", max_len=128)
    ann = _str_map(_get(meta, "annotations"), f"{where}.metadata.annotations")
    spec = _obj(_get(pod, "spec"), f"{where}.spec")
    totals = _pod_totals(spec, f"{where}.spec")

    gpus = int(totals[GPU])
    if gpus > MAX_JOB_GPUS:
        raise BadPayload(f"{where}.spec: requests {gpus:,} {GPU}, more than {MAX_JOB_GPUS:,}")
    milli = WHOLE_GPU
    aw = f"{where}.metadata.annotations[{ANN_MILLI!r}]"
    if ANN_MILLI in ann:
        text = ann[ANN_MILLI].strip()
        if not text.isdigit() or not 1 <= int(text) <= WHOLE_GPU:
            raise BadPayload(f"{aw}: must be a whole number of thousandths of one GPU, "
                             f"1..1000, got {ann[ANN_MILLI]!r}")
        milli = int(text)
        if gpus > 1 and milli < WHOLE_GPU:
            raise BadPayload(f"{aw}: a GPU share is for one GPU, and the pod requests "
                             f"{gpus} {GPU}")
        gpus = max(gpus, 1)
    types: tuple[str, ...] = ()
    if ANN_TYPES in ann:
        tw = f"{where}.metadata.annotations[{ANN_TYPES!r}]"
        types = tuple(sorted({t.strip() for t in ann[ANN_TYPES].split(",") if t.strip()}))
        if not types or len(types) > 64 or any(len(t) > 100 for t in types):
            raise BadPayload(f"{tw}: expected 1..64 comma-separated GPU types of at most 100 "
                             f"characters, got {ann[ANN_TYPES][:200]!r}")
    kind = ann.get(ANN_KIND, TRAINING).strip()
    if kind not in KINDS:
        raise BadPayload(f"{where}.metadata.annotations[{ANN_KIND!r}]: must be one of "
                         f"{', '.join(KINDS)}, got {kind[:100]!r}")
    estimate = None
    if ANN_ESTIMATE in ann:
        ew = f"{where}.metadata.annotations[{ANN_ESTIMATE!r}]"
        try:
            estimate = float(ann[ANN_ESTIMATE])
        except ValueError:
            estimate = -1.0
        if not (math.isfinite(estimate) and 0 < estimate <= MAX_DURATION_S):
            raise BadPayload(f"{ew}: must be seconds, > 0 and <= {MAX_DURATION_S:g}, got "
                             f"{ann[ANN_ESTIMATE][:100]!r}")
    cpu, mem = cpu_milli(totals["cpu"]), memory_mib(totals["memory"])
    if cpu > MAX_CPU_MILLI:
        raise BadPayload(f"{where}.spec: requests cpu {cpu:,}m, more than {MAX_CPU_MILLI:,}m")
    if mem > MAX_MEMORY_MIB:
        raise BadPayload(f"{where}.spec: requests memory {mem:,}Mi, more than "
                         f"{MAX_MEMORY_MIB:,}Mi")
    return PodReq(namespace, name, uid, gpus, milli if gpus else 0, types, cpu, mem, kind,
                  estimate)


# -- nodes --------------------------------------------------------------------------------
def node_name_of(node, where: str) -> str:
    node = _obj(node, where, required=True)
    meta = _obj(_get(node, "metadata"), f"{where}.metadata")
    return _str(_get(meta, "name"), f"{where}.metadata.name", required=True)


def parse_node(node, where: str) -> Node:
    """An autoflow node from a Kubernetes Node object: its GPU type label and its
    allocatable GPUs, CPU and memory (``status.allocatable``, else ``status.capacity``)."""
    name = node_name_of(node, where)
    meta = _obj(_get(node, "metadata"), f"{where}.metadata")
    labels = _str_map(_get(meta, "labels"), f"{where}.metadata.labels")
    status = _obj(_get(node, "status"), f"{where}.status")
    key = "allocatable" if _get(status, "allocatable") is not None else "capacity"
    alloc = _obj(_get(status, key), f"{where}.status.{key}")
    size = {}
    for res in RESOURCES:
        fw = f"{where}.status.{key}[{res!r}]"
        size[res] = parse_quantity(alloc[res], fw) if res in alloc else Decimal(0)
    gpus = _floor(size[GPU])
    if gpus > MAX_GPUS_PER_NODE:
        raise BadPayload(f"{where}.status.{key}[{GPU!r}]: {gpus} GPUs, more than "
                         f"{MAX_GPUS_PER_NODE}")
    gpu_type = next((labels[k] for k in LABEL_TYPES if labels.get(k)), UNKNOWN_TYPE)
    cpu = min(_floor(size["cpu"] * 1000), MAX_CPU_MILLI)
    mem = min(_floor(size["memory"] / (1 << 20)), MAX_MEMORY_MIB)
    return Node(name, gpu_type, gpus, cpu, mem)


# -- the API server ---------------------------------------------------------------------
class KubeApiError(Exception):
    pass


class KubeApi:
    """The few calls the extender makes to the Kubernetes API server: POST a pod's
    ``Binding``, GET a pod. The bearer token is read from its file at each call
    (service-account tokens rotate)."""

    def __init__(self, url: str, token_file: str | None = None, ca_file: str | None = None,
                 timeout_s: float = 10.0):
        import ssl

        import httpx

        self.url = url.rstrip("/")
        self.token_file = token_file
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._http = httpx.Client(base_url=self.url, verify=verify, timeout=timeout_s)
        self._errors = (httpx.HTTPError,)

    def _headers(self) -> dict:
        h = {"Accept": "application/json"}
        if self.token_file:
            try:
                token = Path(self.token_file).read_text().strip()
            except OSError as e:
                raise KubeApiError(f"cannot read the API token file {self.token_file}: "
                                   f"{e.strerror or e}") from e
            h["Authorization"] = f"Bearer {token}"
        return h

    @staticmethod
    def _path(namespace: str, name: str) -> str:
        return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            r = self._http.request(method, path, json=body, headers=self._headers())
        except self._errors as e:
            raise KubeApiError(f"{method} {self.url}{path}: {type(e).__name__}: {e}") from e
        if r.status_code >= 300:
            try:
                msg = r.json().get("message") or r.text
            except ValueError:
                msg = r.text
            raise KubeApiError(f"{method} {self.url}{path}: HTTP {r.status_code}: "
                               f"{str(msg)[:500]}")
        try:
            return r.json()
        except ValueError:
            return {}

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        meta = {"name": name, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        self._call("POST", self._path(namespace, name) + "/binding",
                   {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}})

    def pod(self, namespace: str, name: str) -> dict:
        return self._call("GET", self._path(namespace, name))

    def pods(self) -> list[dict]:
        """Every pod (``GET /api/v1/pods``): the pod sync's one call a round."""
        items = self._call("GET", "/api/v1/pods").get("items")
        return items if isinstance(items, list) else []

    def close(self) -> None:
        self._http.close()


# -- the extender -------------------------------------------------------------------------
class Extender:
    """The extender's logic over the service's engine (``app.state.k8s``)."""

    def __init__(self, service):
        self.service = service
        self.engine = service.engine
        cfg = service.config
        url = getattr(cfg, "k8s_api", None)
        self.api = KubeApi(url, getattr(cfg, "k8s_token_file", None),
                           getattr(cfg, "k8s_ca_file", None)) if url else None
        self._pods: OrderedDict[str, PodReq] = OrderedDict()
        self._uid_job: dict[str, str] | None = None
        self._mu = threading.Lock()

    # -- pods seen ------------------------------------------------------------------------
    def _remember(self, req: PodReq) -> None:
        if not req.uid:
            return
        with self._mu:
            self._pods[req.uid] = req
            self._pods.move_to_end(req.uid)
            while len(self._pods) > PODS_KEPT:
                self._pods.popitem(last=False)

    def _uid_jobs(self) -> dict[str, str]:
        """Pod UID -> job id of the pods bound through autoflow (from the store once,
        then kept by bind)."""
        with self._mu:
            if self._uid_job is None:
                found = {}
                for row in self.service.store.jobs(states=("running",), limit=10**9):
                    pod = (row["spec"] or {}).get("pod")
                    if isinstance(pod, dict) and pod.get("uid"):
                        found[pod["uid"]] = row["job_id"]
                self._uid_job = found
            return self._uid_job

    # -- filter / prioritize --------------------------------------------------------------
    def _candidates(self, args: dict) -> tuple[list[str], dict[str, dict] | None]:
        """The candidate node names, and with full ``Nodes`` their objects by name."""
        nodes = _get(args, "Nodes")
        names = _get(args, "NodeNames")
        if nodes is not None:
            nl = _obj(nodes, "Nodes")
            objects: dict[str, dict] = {}
            order = []
            for i, n in enumerate(_list(_get(nl, "items"), "Nodes.items")):
                name = node_name_of(n, f"Nodes.items[{i}]")
                objects[name] = n
                order.append(name)
            return order, objects
        if names is not None:
            out = []
            for i, n in enumerate(_list(names, "NodeNames")):
                out.append(_str(n, f"NodeNames[{i}]", required=True))
            return out, None
        raise BadPayload("Nodes / NodeNames: one of them is required (NodeNames when the "
                         "extender is nodeCacheCapable)")

    def _judge(self, req: PodReq, names: list[str], objects: dict[str, dict] | None):
        """Per candidate: fits now (with the placer's score), or why not, and whether
        preemption could help. Returns ``(fits: {name: score}, failed, unresolvable)``
        with raw placer scores (lower is better)."""
        eng = self.engine
        fits: dict[str, float] = {}
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        outside: list[tuple[str, Node]] = []
        with eng.lock:
            st = eng.core.state
            job = req.job(eng.clock.now())
            r = st.compile(job)
            mask = node_mask(st, r)
            empty = eng.empty
            r0 = empty.compile(job)
            ever = node_mask(empty, r0)
            known = []
            for name in names:
                i = eng.node_index.get(name)
                if i is None:
                    if objects is None:
                        unresolvable[name] = (f"autoflow: node {name} is not registered "
                                              f"(POST /v1/clusters)")
                    else:
                        outside.append((name, parse_node(objects[name],
                                                         f"Nodes.items[{name!r}]")))
                    continue
                row_state = eng.node_rows[name]["state"]
                if mask[i]:
                    known.append((name, i))
                elif row_state != "up":
                    unresolvable[name] = f"autoflow: node {name} is {row_state}"
                elif not ever[i]:
                    unresolvable[name] = "autoflow: never fits: " + _deficit(empty, r0, i, job)
                else:
                    failed[name] = "autoflow: " + _deficit(st, r, i, job)
            if known:
                idx = np.array([i for _n, i in known], dtype=np.intp)
                for (name, _i), s in zip(known, self._scores(st, r, idx)):
                    fits[name] = s
        if outside:
            spec = ClusterSpec("kubernetes", [n for _name, n in outside])
            ost = ClusterState(spec)
            r2 = ost.compile(job)
            m2 = node_mask(ost, r2)
            ok = np.flatnonzero(m2)
            for (name, _n), s in zip([outside[i] for i in ok], self._scores(ost, r2, ok)):
                fits[name] = s
            for i, (name, _n) in enumerate(outside):
                if not m2[i]:
                    unresolvable[name] = "autoflow: never fits: " + _deficit(ost, r2, i, job)
        return fits, failed, unresolvable

    def _scores(self, st: ClusterState, r: Req, idx: np.ndarray) -> list[float]:
        """The serving policy's placer's scores of nodes ``idx`` (all fit), lower better."""
        placer = self.engine.policy.placer
        if idx.size == 0:
            return []
        if r.fractional:
            nodes, gpus = np.nonzero(gpu_mask(st, r))
            keep = np.isin(nodes, idx)
            nodes, gpus = nodes[keep], gpus[keep]
            s = np.asarray(placer.gpu_scores(st, r, nodes, gpus), dtype=np.float64)
            best = {}
            for n, v in zip(nodes.tolist(), s.tolist()):
                best[n] = min(v, best.get(n, math.inf))
            return [best[i] for i in idx.tolist()]
        return [float(x) for x in np.asarray(placer.node_scores(st, r, idx),
                                             dtype=np.float64)]

    def filter(self, args: dict) -> dict:
        req = parse_pod(_get(args, "Pod"))
        self._remember(req)
        names, objects = self._candidates(args)
        fits, failed, unresolvable = self._judge(req, names, objects)
        passed = [n for n in names if n in fits]
        out = {"Nodes": None, "NodeNames": None, "FailedNodes": failed,
               "FailedAndUnresolvableNodes": unresolvable, "Error": ""}
        if objects is None:
            out["NodeNames"] = passed
        else:
            out["Nodes"] = {"metadata": {}, "items": [objects[n] for n in passed]}
        return out

    def prioritize(self, args: dict) -> list[dict]:
        req = parse_pod(_get(args, "Pod"))
        self._remember(req)
        names, objects = self._candidates(args)
        fits, _failed, _unres = self._judge(req, names, objects)
        scores = scale_scores(fits)
        return [{"Host": n, "Score": scores.get(n, 0)} for n in names]

    # -- bind -----------------------------------------------------------------------------
    def _pod_for_bind(self, namespace: str, name: str, uid: str) -> PodReq:
        with self._mu:
            req = self._pods.get(uid)
        if req is not None:
            if (req.namespace, req.name) != (namespace, name):
                raise BadPayload(f"PodUID: {uid!r} is pod {req.namespace}/{req.name}, not "
                                 f"{namespace}/{name}")
            return req
        if self.api is None:
            raise BadPayload(f"PodUID: pod {namespace}/{name} ({uid}) is unknown to autoflow: "
                             f"no filter or prioritize call named it, and no --k8s-api is "
                             f"configured to fetch it")
        pod = self.api.pod(namespace, name)
        req = parse_pod(pod, "Pod (from the API server)")
        if uid and req.uid and req.uid != uid:
            raise BadPayload(f"PodUID: the API server's pod {namespace}/{name} has UID "
                             f"{req.uid}, not {uid}")
        self._remember(req)
        return req

    def bind(self, args: dict) -> dict:
        name = _str(_get(args, "PodName"), "PodName", required=True)
        namespace = _str(_get(args, "PodNamespace"), "PodNamespace", max_len=63) or "default"
        uid = _str(_get(args, "PodUID"), "PodUID", required=True, max_len=128)
        node = _str(_get(args, "Node"), "Node", required=True)
        req = self._pod_for_bind(namespace, name, uid)
        eng = self.engine
        job_id = req.job_id
        if node in eng.node_index:
            with eng.lock:
                existing = self.service.store.job(job_id)
                if existing is not None:
                    where = [p[0] for p in existing["placement"] or []]
                    if existing["state"] == "running" and where == [node]:
                        return {"Error": ""}  # bound already (kube-scheduler retried)
                    return {"Error": f"autoflow: pod {namespace}/{name} was bound before "
                                     f"(job {job_id} is {existing['state']})"}
                st = eng.core.state
                job = req.job(eng.clock.now())
                r = st.compile(job)
                i = eng.node_index[node]
                if eng.node_rows[node]["state"] != "up" or not node_mask(st, r)[i]:
                    why = (f"node {node} is {eng.node_rows[node]['state']}"
                           if eng.node_rows[node]["state"] != "up" else _deficit(st, r, i, job))
                    return {"Error": f"autoflow: pod {namespace}/{name} does not fit on node "
                                     f"{node} now: {why}"}
                placement = self._place_on(st, r, i)
                row = {"job_id": job_id, "spec": req.spec(node), "user": namespace,
                       "num_gpus": req.num_gpus, "kind": req.kind}
                try:
                    eng.bind_external(row, placement, {"source": "kubernetes", "node": node,
                                                       "pod": f"{namespace}/{name}",
                                                       "uid": uid})
                except Conflict as e:
                    return {"Error": f"autoflow: {e}"}
                if uid:
                    self._uid_jobs()[uid] = job_id
        if self.api is not None:
            try:
                self.api.bind(namespace, name, uid, node)
            except KubeApiError as e:
                if node in eng.node_index:  # the pod did not go there: its place is freed
                    eng.report(job_id, "failed", detail={"message": f"binding failed: {e}"})
                return {"Error": f"autoflow: binding pod {namespace}/{name} to {node}: {e}"}
        return {"Error": ""}

    def _place_on(self, st: ClusterState, r: Req, i: int):
        """Where on node ``i`` the pod goes: the placer's choice of GPU for a share, the
        first idle GPUs for whole GPUs (as the placers do)."""
        if r.num_gpus == 0:
            return [(i, (), 0, r.cpu, r.mem)]
        free = st.gpu_free[i].tolist()
        if r.fractional:
            gpus = np.array([g for g, f in enumerate(free) if f >= r.milli], dtype=np.intp)
            nodes = np.full(gpus.size, i, dtype=np.intp)
            s = self.engine.policy.placer.gpu_scores(st, r, nodes, gpus)
            return [(i, (int(gpus[int(np.argmin(s))]),), r.milli, r.cpu, r.mem)]
        idle = [g for g, f in enumerate(free) if f == WHOLE_GPU]
        return [(i, tuple(idle[: r.num_gpus]), WHOLE_GPU, r.cpu, r.mem)]

    # -- preempt --------------------------------------------------------------------------
    def preempt(self, args: dict) -> dict:
        req = parse_pod(_get(args, "Pod"))
        self._remember(req)
        full = _get(args, "NodeNameToVictims")
        meta = _get(args, "NodeNameToMetaVictims")
        proposals: dict[str, tuple[list[str], int]] = {}
        if meta is not None:
            for node, v in _obj(meta, "NodeNameToMetaVictims").items():
                where = f"NodeNameToMetaVictims[{node!r}]"
                v = _obj(v, where, required=True)
                uids = [_str(_get(_obj(p, f"{where}.Pods[{k}]", required=True), "UID"),
                             f"{where}.Pods[{k}].UID", required=True, max_len=128)
                        for k, p in enumerate(_list(_get(v, "Pods"), f"{where}.Pods"))]
                proposals[node] = (uids, _pdb(v, where))
            full_mode = False
        elif full is not None:
            for node, v in _obj(full, "NodeNameToVictims").items():
                where = f"NodeNameToVictims[{node!r}]"
                v = _obj(v, where, required=True)
                uids = []
                for k, p in enumerate(_list(_get(v, "Pods"), f"{where}.Pods")):
                    pw = f"{where}.Pods[{k}]"
                    pm = _obj(_get(_obj(p, pw, required=True), "metadata"), f"{pw}.metadata")
                    uids.append(_str(_get(pm, "uid"), f"{pw}.metadata.uid", required=True,
                                     max_len=128))
                proposals[node] = (uids, _pdb(v, where))
            full_mode = True
        else:
            raise BadPayload("NodeNameToMetaVictims / NodeNameToVictims: one of them is "
                             "required")
        uid_job = self._uid_jobs()
        out: dict[str, dict] = {}
        eng = self.engine
        with eng.lock:
            st = eng.core.state
            now = eng.clock.now()
            job = req.job(now)
            r = st.compile(job)
            pkey = _preempt_key(eng.policy, JobState(-1, job, r), now)
            for node, (uids, pdb) in proposals.items():
                i = eng.node_index.get(node)
                if i is None:
                    if full_mode:  # not autoflow's node: no opinion
                        out[node] = _meta(uids, pdb)
                    continue
                if eng.node_rows[node]["state"] != "up":
                    continue
                ours: list[tuple[str, JobState]] = []
                others: list[str] = []
                for u in uids:
                    js = eng.by_id.get(uid_job.get(u, ""))
                    if js is not None and js.status == RUNNING:
                        ours.append((u, js))
                    else:
                        others.append(u)
                agreed = _agreed(eng.policy, ours, pkey, now)
                if agreed is None:
                    continue
                taken: list[str] = []
                trial = st.copy()
                for u, js in agreed:
                    if node_mask(trial, r)[i]:
                        break
                    trial.release(js.placement)
                    taken.append(u)
                if not node_mask(trial, r)[i]:
                    continue  # autoflow's state says it still would not fit
                out[node] = _meta(others + taken, pdb)
        return {"NodeNameToMetaVictims": out}


def _pdb(v: dict, where: str) -> int:
    n = _get(v, "NumPDBViolations", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise BadPayload(f"{where}.NumPDBViolations: expected a whole number >= 0, got {n!r}")
    return n


def _meta(uids: list[str], pdb: int) -> dict:
    return {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb}


def _preempt_key(policy, js: JobState, now: float):
    try:
        return policy.preempt_key(js, now)
    except Exception:  # noqa: BLE001 (a policy that cannot rank an outside job)
        return None


def _agreed(policy, ours: list[tuple[str, JobState]], pkey, now: float):
    """The autoflow victims the policy agrees to preempt, worst-ranked first; None when
    one of them may not be preempted at all (an inference job)."""
    if any(not js.preemptible for _u, js in ours):
        return None
    ranked = []
    for u, js in ours:
        vkey = _preempt_key(policy, js, now)
        try:
            if pkey is not None and vkey is not None and not vkey > pkey:
                continue  # it ranks ahead of the pod: the policy would not preempt it
        except TypeError:
            pass  # keys of different shapes: no order to go by
        ranked.append((vkey, js.idx, u, js))
    try:
        ranked.sort(key=lambda x: (x[0], x[1]), reverse=True)
    except TypeError:
        ranked.sort(key=lambda x: x[1], reverse=True)
    return [(u, js) for _k, _i, u, js in ranked]


def _deficit(st: ClusterState, r: Req, i: int, job: Job) -> str:
    """Why the job does not fit on node ``i`` of ``st`` (what ``node_mask`` tested)."""
    why = []
    if not st.up[i]:
        why.append("the node is not up")
    ntype = st.types[st.node_type[i]] if st.node_type[i] >= 0 else UNKNOWN_TYPE
    if r.num_gpus and not st.type_masks[r.types_key][i]:
        why.append(f"GPU type {ntype} is not one of {', '.join(job.gpu_types)}")
    elif r.num_gpus:
        if r.fractional:
            best = st.best_gpu_list()[i]
            if best < r.milli:
                why.append(f"needs {r.milli}/1000 of one GPU, the node's freest GPU has "
                           f"{max(best, 0)}/1000 free")
        elif st.whole_free[i] < r.num_gpus:
            why.append(f"needs {r.num_gpus} idle GPU(s), the node has {st.whole_free[i]} idle "
                       f"of {st.node_gpus[i]}")
    if r.cpu and st.cpu_free[i] < r.cpu:
        why.append(f"needs cpu {r.cpu}m, the node has {max(int(st.cpu_free[i]), 0)}m free")
    if r.mem and st.mem_free[i] < r.mem:
        why.append(f"needs memory {r.mem}Mi, the node has {max(int(st.mem_free[i]), 0)}Mi "
                   f"free")
    return "; ".join(why) or "does not fit"


def scale_scores(raw: dict[str, float]) -> dict[str, int]:
    """Placer scores (lower is better) as extender priorities: 1..10 over the nodes that
    fit, 10 for the best; nodes that do not fit are left out (score 0)."""
    if not raw:
        return {}
    lo, hi = min(raw.values()), max(raw.values())
    if hi == lo or not math.isfinite(hi - lo):
        return {n: MAX_SCORE for n in raw}
    return {n: 1 + round((MAX_SCORE - 1) * (hi - s) / (hi - lo)) for n, s in raw.items()}


# -- HTTP -----------------------------------------------------------------------------------
def mount(app: FastAPI) -> None:
    """Attaches the extender to the service (``app.state.k8s``). Its routes are not on
    the API app: :func:`extender_app` serves them on their own (mutual-TLS) listener."""
    ext = app.state.k8s = Extender(app.state.service)
    if ext.api is not None:  # the pods it binds: their outcomes come back as events
        from .k8s_pods import PodSync

        svc = app.state.service
        svc.workers.append(PodSync(svc, ext.api, svc.config.k8s_pod_sync_s))


def _bad(msg: str) -> JSONResponse:
    return JSONResponse({"Error": msg}, status_code=400)


async def _body(request: Request):
    raw = await request.body()
    try:
        args = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, _bad(f"request body: not JSON ({e})")
    if not isinstance(args, dict):
        return None, _bad(f"request body: expected a JSON object, got {type(args).__name__}")
    return args, None


def extender_app(api_app: FastAPI) -> FastAPI:
    """The extender's own app, sharing the service of ``api_app`` (its lifespan runs
    there): ``/k8s/filter``, ``/k8s/prioritize``, ``/k8s/bind``, ``/k8s/preempt``."""
    if not hasattr(api_app.state, "k8s"):
        mount(api_app)
    ext: Extender = api_app.state.k8s
    app = FastAPI(title="autoflow kube-scheduler extender", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.k8s = ext
    app.state.service = api_app.state.service
    app.add_middleware(LimitBody, max_bytes=EXTENDER_MAX_BODY)

    def route(path: str, fn, with_error: bool):
        async def handler(request: Request):
            args, bad = await _body(request)
            if bad is not None:
                return bad
            try:
                result = await run_in_threadpool(fn, args)
            except BadPayload as e:
                if path == "filter":
                    return JSONResponse({"Nodes": None, "NodeNames": None, "FailedNodes": None,
                                         "FailedAndUnresolvableNodes": None, "Error": str(e)})
                if with_error:
                    return JSONResponse({"Error": str(e)})
                return _bad(str(e))
            except KubeApiError as e:  # fetching the pod for bind
                return JSONResponse({"Error": f"autoflow: {e}"})
            return JSONResponse(result)
        handler.__name__ = f"k8s_{path}"
        app.post(f"/k8s/{path}")(handler)

    route("filter", ext.filter, True)
    route("prioritize", ext.prioritize, False)
    route("bind", ext.bind, True)
    route("preempt", ext.preempt, False)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app



# -- serving ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    client_ca: str


def check_serve_flags(extender_port, tls_cert, tls_key, tls_client_ca, k8s_api,
                      k8s_token_file, k8s_ca_file) -> TlsFiles | None:
    """``autoflow serve``'s extender flags, checked before anything listens."""
    from ..errors import ConfigError

    tls = {"--tls-cert": tls_cert, "--tls-key": tls_key, "--tls-client-ca": tls_client_ca}
    if extender_port is None:
        given = [k for k, v in tls.items() if v]
        if given:
            raise ConfigError(f"{given[0]} is for the extender's listener: give "
                              f"--extender-port too")
    else:
        for flag, path in tls.items():
            if not path:
                raise ConfigError(f"--extender-port needs {flag}: the extender is served "
                                  f"over mutual TLS only (docs/k8s-extender.md)")
    for flag, path in (*tls.items(), ("--k8s-token-file", k8s_token_file),
                       ("--k8s-ca-file", k8s_ca_file)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{flag}: {path} is not a readable file")
    if k8s_api is not None and not re.match(r"^https?://[^/\s]+", k8s_api):
        raise ConfigError(f"--k8s-api: expected an http(s):// URL, got {k8s_api!r}")
    if (k8s_token_file or k8s_ca_file) and not k8s_api:
        raise ConfigError("--k8s-token-file and --k8s-ca-file are for --k8s-api: give it too")
    if extender_port is None:
        return None
    try:  # the files load as a server context that requires client certificates
        tls_context(TlsFiles(tls_cert, tls_key, tls_client_ca))
    except (OSError, ValueError) as e:
        raise ConfigError(f"--tls-cert / --tls-key / --tls-client-ca: cannot load them: "
                          f"{e}") from e
    return TlsFiles(tls_cert, tls_key, tls_client_ca)


def tls_context(tls: TlsFiles):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.cert, tls.key)
    ctx.load_verify_locations(tls.client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _listen(host: str, port: int, what: str):
    import socket

    from ..errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (as getaddrinfo gives): asyncio then sets TCP_NODELAY on accepted
    # connections; with proto 0 it does not, and every TLS answer waits out a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"{what}: cannot listen on {host}:{port}: {e.strerror or e}") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_with_extender(api_app: FastAPI, host: str, port: int, ext_host: str,
                        ext_port: int, tls: TlsFiles, log_level: str, err) -> None:
    """Runs the API (``api_app``, bearer tokens) on ``host:port`` and the extender
    (:func:`extender_app`, mutual TLS: ``ssl_cert_reqs=CERT_REQUIRED``) on
    ``ext_host:ext_port``, in one process and one event loop. The API's server owns the
    signals and the service's lifespan; the extender stops with it."""
    import asyncio
    import contextlib
    import ssl

    import uvicorn

    class _Follower(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # the API server handles Ctrl-C / SIGTERM for both
            yield

    class _Leader(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            ext.should_exit = True
            super().handle_exit(sig, frame)

    main_sock = _listen(host, port, "--port")
    ext_sock = _listen(ext_host, ext_port, "--extender-port")
    main = _Leader(uvicorn.Config(api_app, log_level=log_level))
    ext = _Follower(uvicorn.Config(extender_app(api_app), log_level=log_level,
                                   lifespan="off", ssl_certfile=tls.cert,
                                   ssl_keyfile=tls.key, ssl_ca_certs=tls.client_ca,
                                   ssl_cert_reqs=ssl.CERT_REQUIRED))
    err.print(f"kube-scheduler extender: https://{ext_host}:{ext_sock.getsockname()[1]}/k8s "
              f"(mutual TLS)", highlight=False)

    async def both() -> None:
        follower = asyncio.create_task(ext.serve(sockets=[ext_sock]))
        try:
            await main.serve(sockets=[main_sock])
        finally:
            ext.should_exit = True
            await follower

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stopped (as uvicorn.run)
        asyncio.run(both())
