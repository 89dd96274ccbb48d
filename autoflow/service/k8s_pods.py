"""Pods that end: with ``--k8s-api``, autoflow follows the pods it bound and reports
what became of them as executor events, so that their capacity frees and the outcomes
are kept (what the self-optimizing loop learns from).

Every ``k8s_pod_sync_s`` seconds (default 5) ``PodSync`` lists the pods once
(``GET /api/v1/pods``) and, for each job that is running in autoflow because the
extender bound its pod (matched by pod UID):

- phase ``Succeeded`` → ``finished``;
- phase ``Failed`` → ``failed``, with the pod's reason (or its containers' terminated
  reason and exit code) kept as the job's ``reason``;
- no pod with that UID any more (deleted, evicted, or recreated under the same name) →
  the job is cancelled, reason ``pod deleted``; a recreated pod is another job, bound
  again through the extender.

Pods still ``Pending``, ``Running`` or ``Unknown`` change nothing. An API server that
cannot be reached is logged and tried again at the next round; nothing is lost.
"""

from __future__ import annotations

import logging
import threading

from .k8s import KubeApiError

log = logging.getLogger("autoflow.service")

POD_SYNC_S = 5.0


def outcome(pod: dict | None) -> tuple[str, str] | None:
    """What the pod's state means for its job: ``(event, message)``; None: nothing yet."""
    if pod is None:
        return "gone", "pod deleted"
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return "finished", ""
    if phase == "Failed":
        why = [status.get("reason"), status.get("message")]
        for c in status.get("containerStatuses") or []:
            term = ((c or {}).get("state") or {}).get("terminated") or {}
            if term:
                why.append(f"container {c.get('name')}: {term.get('reason') or 'terminated'}"
                           f" (exit code {term.get('exitCode')})")
        return "failed", "; ".join(str(w) for w in why if w) or "pod failed"
    return None


class PodSync:
    def __init__(self, service, api, interval_s: float = POD_SYNC_S):
        self.service = service
        self.engine = service.engine
        self.api = api
        self.interval_s = interval_s
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoflow-pod-sync",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def bound(self) -> dict[str, str]:
        """Pod UID -> job id of the jobs running because the extender bound their pod."""
        out = {}
        for row in self.service.store.jobs(states=("running",), limit=10**9):
            pod = (row["spec"] or {}).get("pod")
            if isinstance(pod, dict) and pod.get("uid"):
                out[pod["uid"]] = row["job_id"]
        return out

    def sync_once(self) -> dict[str, int]:
        """One round; returns how many jobs finished, failed and were cancelled."""
        counts = {"finished": 0, "failed": 0, "cancelled": 0}
        bound = self.bound()
        if not bound:
            return counts
        pods = {}
        for p in self.api.pods():
            uid = ((p or {}).get("metadata") or {}).get("uid")
            if uid:
                pods[uid] = p
        events, gone = [], []
        for uid, job_id in bound.items():
            what = outcome(pods.get(uid))
            if what is None:
                continue
            event, message = what
            if event == "gone":
                gone.append(job_id)
                continue
            detail = {"source": "kubernetes"} | ({"message": message} if message else {})
            events.append({"job_id": job_id, "event": event, "detail": detail})
        if events:
            for e, r in zip(events, self.engine.report_many(events), strict=True):
                if "status" not in r:
                    counts[e["event"]] += 1
        for job_id in gone:
            if self.engine.cancel(job_id, reason="pod deleted") == "cancelled":
                counts["cancelled"] += 1
        return counts

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync_once()
                self.rounds += 1
            except KubeApiError as e:  # the API server: next round
                log.warning("pod sync: %s", e)
            except Exception:
                log.exception("pod sync failed")
