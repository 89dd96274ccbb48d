"""The self-optimizing loop inside ``autoflow serve --self-optimize``.

A worker of the service (``OutcomeLoop``) watches the outcomes the executors report.
The next ``window_jobs`` jobs submitted after the previous window make a window; it
closes once at least half of them have ended (or once twice as many jobs are waiting to
be counted: the queue is growing, and the window is judged with what is known). It is
judged as ``autoflow loop`` judges one (``loop.step.judge_window``): drift of the
window's outcomes against the reference window (the first one, then the one the champion
was promoted on), the performance signal (the window replayed under the champion and
every heuristic), and on either a challenger trained from the champion on the window and
its variants, registered, compared in paired replays, then promoted or rejected with its
evidence. What the window holds is what the service knows when it closes:

* ``known``: the window's jobs that succeeded, with the work they did (their durations);
* ``censored``: its jobs still waiting or running, at the median duration of the
  succeeded jobs that ran longer than their work done (``loop.step.Imputer``);
* ``backlog``: the jobs that were waiting or running when the window began, with the work
  they had left then. Failed and cancelled jobs are counted (``dropped``), not replayed.

The judging runs in a child process (``python -m autoflow.loop.window_job DIR``), so
replays and training never hold the service's interpreter; one window is judged at a
time, and jobs that arrive meanwhile belong to the next window. A promotion lands in the
registry, and the champion watcher (``loop.watch``) swaps the serving policy at its next
read: decisions issued stand, the next pass is the new champion's.

The loop's files are under ``DIR/loop/`` beside the registry's ``models/`` folder
(``state.json``: where the next window starts, its reference and backlog, so a restart
resumes; ``windows.jsonl``: one line per judged window; ``window-K/``: each window's
inputs, result and retraining files). ``GET /v1/loop``, ``/metrics`` (``autoflow_loop_*``)
and the dashboard show them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from .. import jsonsafe
from ..core.jobstate import DONE, RUNNING
from ..errors import ConfigError
from .drift import DriftConfig
from .offline import LoopConfig
from .step import Imputer
from .window_job import DB_ENV, read_jobs, write_inputs

log = logging.getLogger("autoflow.loop.online")

MIN_WINDOW = 20  # fewest jobs a window may be set to
DEFAULT_WINDOW = 500


def check_window(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_WINDOW <= n <= 1_000_000:
        raise ConfigError(f"--self-optimize-window must be a number of jobs in "
                          f"[{MIN_WINDOW}, 1000000], got {n!r}")
    return n


class OutcomeLoop:
    def __init__(self, service, registry, window_jobs: int = DEFAULT_WINDOW,
                 interval_s: float = 5.0, cfg: LoopConfig | None = None,
                 on_promotion=None):
        self.service = service
        self.engine = service.engine
        self.store = service.store
        self.registry = registry
        self.window_jobs = check_window(window_jobs)
        self.interval_s = interval_s
        least = min(50, window_jobs // 2)  # outcomes to judge a window, values to test drift
        self.cfg = cfg or LoopConfig(sources=[], out="", min_window_jobs=least,
                                     drift=DriftConfig(min_rows=least))
        self.on_promotion = on_promotion  # called after a promotion (the watcher's check)
        self.folder = Path(registry.files_dir).parent / "loop"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = self._load_state()
        self.windows: list[dict] = self._load_windows()
        self.running: tuple[subprocess.Popen, Path, dict] | None = None
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoflow-outcome-loop",
                                        daemon=True)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.ensure_champion()
        self._thread.start()

    def ensure_champion(self) -> None:
        """With no champion in the registry, the shipped adaptive model becomes the first
        (registered and promoted): the loop trains challengers from the champion."""
        if self.registry.alias("champion") is not None:
            return
        from .offline import SHIPPED

        sha = self.registry.register(SHIPPED, kind="adaptive", name="initial champion",
                                     lineage={"source": str(SHIPPED),
                                              "role": "initial champion"})
        self.registry.promote(sha, reason="initial champion of autoflow serve --self-optimize "
                              "(the shipped adaptive model; the registry had none)")
        if self.on_promotion is not None:
            self.on_promotion()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.running is not None and self.running[0].poll() is None:
            self.running[0].terminate()  # a restart judges the window again
            self.running[0].wait(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - the service keeps serving
                self.errors += 1
                log.error("self-optimize loop: %s", e)

    # -- state ----------------------------------------------------------------------------
    def _load_state(self) -> dict:
        p = self.folder / "state.json"
        if p.is_file():
            return json.loads(p.read_text())
        return {"cursor": 0, "start": None, "index": 0, "reference": None,
                "reference_span": None, "snapshot": {}}

    def _save_state(self) -> None:
        jsonsafe.write(self.folder / "state.json", self.state)

    def _load_windows(self) -> list[dict]:
        p = self.folder / "windows.jsonl"
        if not p.is_file():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def _record(self, row: dict) -> None:
        self.windows.append(row)
        with open(self.folder / "windows.jsonl", "a", encoding="utf-8") as f:
            f.write(jsonsafe.dumps(row, indent=None) + "\n")

    # -- one tick -------------------------------------------------------------------------
    def tick(self) -> str:
        """Collects a judged window's result, or closes the next window if it is full.
        Returns what it did: ``judging``, ``judged``, ``closed``, ``reference`` or
        ``waiting``."""
        if self.running is not None:
            proc, folder, row = self.running
            if proc.poll() is None:
                return "judging"
            self.running = None
            self._collect(folder, row, proc.returncode)
            return "judged"
        pending = self.store.jobs(after=self.state["cursor"], limit=2 * self.window_jobs)
        rows = pending[:self.window_jobs]
        if len(rows) < self.window_jobs:
            return "waiting"
        ended = sum(1 for r in rows if r["state"] not in ("pending", "running"))
        if 2 * ended < len(rows) and len(pending) < 2 * self.window_jobs:
            return "waiting"  # most of the window's jobs have not ended yet
        return self._close(rows, {r["job_id"] for r in pending[self.window_jobs:]})

    def _close(self, rows: list[dict], later: set[str]) -> str:
        """Closes the window of ``rows``; ``later``: jobs submitted since, the next
        window's (not in this window's backlog snapshot)."""
        from ..service.engine import job_from_row

        now, jobs, snapshot = self._view(rows, later)
        st = self.state
        start = st["start"] if st["start"] is not None else float(rows[0]["submit_time"])
        span = (start, now)
        hist = _history(self.store)
        known, censored, dropped = [], [], 0
        for r in rows:
            job = job_from_row(r)
            if r["state"] == "succeeded":
                known.append(replace(job, duration=max(float(r["progress"]), 1.0)))
            elif r["state"] in ("pending", "running"):
                done = jobs.get(r["job_id"], 0.0)
                censored.append(replace(job, censored=True,
                                        duration=hist.duration(job.num_gpus, done)))
            else:
                dropped += 1
        backlog = self._backlog(st["snapshot"], start, hist)
        index = st["index"]
        row = {"index": index, "start": span[0], "end": span[1], "jobs": len(rows),
               "outcomes": len(known), "censored": len(censored), "dropped": dropped,
               "backlog": len(backlog), "drift_detected": False, "retrained": False,
               "promoted": False, "live_model": (self.registry.alias("champion") or {})
               .get("sha256"), "closed_at": time.time()}
        st.update(cursor=int(rows[-1]["seq"]), start=now, index=index + 1, snapshot=snapshot)
        if st["reference"] is None or len(known) < self.cfg.min_window_jobs:
            if st["reference"] is None and len(known) >= self.cfg.min_window_jobs:
                st["reference"] = self._keep_reference(index, known)
                st["reference_span"] = list(span)
                row["note"] = "reference window"
            else:
                row["note"] = (f"{len(known)} outcomes, fewer than "
                               f"{self.cfg.min_window_jobs}: not judged")
            self._save_state()
            self._record(row)
            return "reference"
        folder = self.folder / f"window-{index}"
        reference = read_jobs(Path(st["reference"]))
        write_inputs(folder, {
            "index": index, "span": list(span), "reference_span": st["reference_span"],
            "files_dir": str(self.registry.files_dir),
            "command": "autoflow serve --self-optimize",
            "settings": {"seed": self.cfg.seed, "heuristics": list(self.cfg.heuristics),
                         "drift": asdict(self.cfg.drift),
                         "challenger": asdict(self.cfg.challenger),
                         "compare": asdict(self.cfg.compare)}},
            {"known": known, "censored": censored, "backlog": backlog,
             "reference": reference}, self.engine.spec)
        self._save_state()
        logf = open(folder / "window.log", "wb")  # noqa: SIM115 - the child writes it
        proc = subprocess.Popen([sys.executable, "-m", "autoflow.loop.window_job",
                                 str(folder)], stdout=logf, stderr=subprocess.STDOUT,
                                env={**os.environ, DB_ENV: self.registry.url})
        logf.close()  # the store's URL (a password, maybe) goes by environment, not file
        self.running = (proc, folder, row)
        log.info("self-optimize: window %d closed (%d jobs, %d outcomes), judging", index,
                 len(rows), len(known))
        return "closed"

    def _collect(self, folder: Path, row: dict, rc: int) -> None:
        res_path = folder / "result.json"
        res = json.loads(res_path.read_text()) if res_path.is_file() else {
            "error": f"the window's process exited {rc} without a result "
                     f"(see {folder / 'window.log'})"}
        if "error" in res:
            self.errors += 1
            row["error"] = res["error"]
            log.error("self-optimize: window %d: %s", row["index"], res["error"])
        else:
            row.update(res["row"])
            row["retrainings"] = [{k: e.get(k) for k in ("challenger", "name", "champion",
                                                          "promoted", "reason", "ratio", "ci")}
                                  for e in res["events"]]
            if res["promoted"]:  # the window the new champion was chosen on
                self.state["reference"] = str(folder / "known.csv")
                self.state["reference_span"] = [row["start"], row["end"]]
                self._save_state()
        self._record(row)
        if row.get("promoted") and self.on_promotion is not None:
            self.on_promotion()

    def _keep_reference(self, index: int, known: list) -> str:
        from ..traces import normalized
        from ..workload import Workload

        path = self.folder / f"reference-{index}.csv"
        normalized.write(Workload([replace(j, depends_on=()) for j in known],
                                  source=f"window {index}"), path)  # drift reads no DAG
        return str(path)

    def _view(self, rows: list[dict], later: set[str]
              ) -> tuple[float, dict[str, float], dict[str, float]]:
        """Now, the work done by the window's unfinished jobs, and the snapshot of every
        unfinished job's work done but the ``later`` ones (the next window's backlog)."""
        eng = self.engine
        with eng.lock:
            now = eng.clock.now()
            snapshot = {jid: _work_done(js, now) for jid, js in eng.by_id.items()
                        if js.status != DONE and jid not in later}
        return now, {r["job_id"]: snapshot.get(r["job_id"], 0.0) for r in rows}, snapshot

    def _backlog(self, snapshot: dict[str, float], start: float, hist: Imputer) -> list:
        """The jobs unfinished at the window's start, submitted then with what they had
        left (by their true duration if they have succeeded since)."""
        from ..service.engine import job_from_row

        out = []
        for jid, done in snapshot.items():
            r = self.store.job(jid)
            if r is None or r["state"] not in ("succeeded", "pending", "running"):
                continue
            job = job_from_row(r)
            if r["state"] == "succeeded":
                total = float(r["progress"])
            else:
                with self.engine.lock:
                    js = self.engine.by_id.get(jid)
                    now_done = _work_done(js, self.engine.clock.now()) if js else done
                total = hist.duration(job.num_gpus, now_done)
            out.append(replace(job, submit_time=start, duration=max(total - done, 1.0),
                               extra={**job.extra, "backlog": True}))
        return out

    # -- views ----------------------------------------------------------------------------
    def view(self, last: int = 20) -> dict:
        rows = self.windows[-last:]
        return {"window_jobs": self.window_jobs, "windows": len(self.windows),
                "judging": None if self.running is None else self.running[2]["index"],
                "next_window_starts_after_seq": self.state["cursor"],
                "drifts": sum(1 for r in self.windows if r.get("drift_detected")),
                "retrainings": sum(1 for r in self.windows if r.get("retrained")),
                "promotions": sum(1 for r in self.windows if r.get("promoted")),
                "errors": self.errors, "recent": rows}


def _work_done(js, now: float) -> float:
    return js.running_progress(now) if js.status == RUNNING else js.progress


def _history(store) -> Imputer:
    """The durations of the succeeded jobs (the latest 10,000; ``loop.step.Imputer``)."""
    return Imputer([(int(r["spec"].get("num_gpus", 1)), float(r["duration"]))
                    for r in store.completed_durations()])
