"""``--executor sim``: a built-in executor that "runs" each started job on the service's
(scaled) clock for the duration the job declared, so that the whole loop — submit,
decide, execute, report, learn — works on a laptop with no cluster.

It is an executor like any other: it follows the decision feed from a cursor and reports
outcomes through the engine's ``report`` (what ``POST /v1/jobs/{id}/events`` calls). A
job runs for its ``duration_estimate_s`` (or, without one, the duration the scheduler
predicted when it started) minus the work it had already done, plus the restart
overhead; a preempt decision stops it (the preemption is confirmed with ``preempted``).
After a restart, jobs that were running finish on the same terms.
"""

from __future__ import annotations

import logging
import threading

from ..errors import AutoflowError
from .clock import Timers
from .engine import Engine

log = logging.getLogger("autoflow.service")


class SimExecutor:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.lock = threading.RLock()
        self.timers = Timers(engine.clock, self.lock)
        self.cursor = engine.seq
        self.running: dict[str, int] = {}  # job id -> seq of the start it runs under
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._follow, name="autoflow-sim-executor",
                                        daemon=True)
        engine.listeners.append(lambda seq: self._wake.set())

    def start(self) -> None:
        eng = self.engine
        with eng.lock:  # jobs running before a restart finish as they would have
            self.cursor = eng.seq
            for js in list(eng.core.running.values()):
                self._run(js.job.job_id, 0)
        self.timers.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self.timers.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self, job_id: str, seq: int) -> None:
        eng = self.engine
        js = eng.job(job_id)
        if js is None:
            return
        declared = js.job.extra.get("duration_estimate_s") or js.predicted
        now = eng.clock.now()
        end = now + js.seg_overhead + max(0.0, float(declared) - js.running_progress(now))
        with self.lock:
            self.running[job_id] = seq
        self.timers.add(end, lambda: self._finish(job_id, seq))

    def _finish(self, job_id: str, seq: int) -> None:
        with self.lock:
            if self.running.get(job_id) != seq:
                return  # preempted, or cancelled, since
            del self.running[job_id]
        self._report(job_id, "finished")

    def _report(self, job_id: str, event: str) -> None:
        try:
            self.engine.report(job_id, event)
        except AutoflowError as e:  # e.g. cancelled meanwhile: nothing to report
            log.info("sim executor: %s %s not accepted: %s", job_id, event, e)

    def _follow(self) -> None:
        while not self._stop:
            try:
                rows = self.engine.store.decisions_after(self.cursor, 500)
            except Exception:
                log.exception("sim executor: reading decisions failed")
                rows = []
            if not rows:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            for d in rows:
                self.cursor = d["seq"]
                if d["action"] == "start":
                    self._run(d["job_id"], d["seq"])
                    self._report(d["job_id"], "started")
                elif d["action"] == "preempt":
                    with self.lock:
                        was = self.running.pop(d["job_id"], None)
                    if was is not None and (d["explanation"] or {}).get("reason") == "preempted":
                        self._report(d["job_id"], "preempted")
