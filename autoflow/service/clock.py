"""The service's clock and timers.

Cluster time is seconds since the store was created (its ``origin``, wall-clock epoch
seconds, kept in the store so that a restart continues the same timeline), run
``time_scale`` times faster than the wall clock: with ``--time-scale 600`` ten minutes of
cluster time pass every wall second (the ``sim`` executor's jobs finish that fast too).

``Timers`` runs the scheduler core's ``call_at`` callbacks on one thread, in time order,
each under the engine's lock; a pass requested "now" runs as soon as the caller releases
the lock.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Clock:
    def __init__(self, origin: float, time_scale: float = 1.0):
        self.origin = float(origin)
        self.scale = float(time_scale)

    def now(self) -> float:
        return (time.time() - self.origin) * self.scale

    def wall_delay(self, t: float) -> float:
        """Wall seconds until cluster time ``t`` (<= 0 when due)."""
        return (self.origin + t / self.scale) - time.time()


class Timers:
    """A heap of (cluster time, callback) run by one daemon thread under ``lock``."""

    def __init__(self, clock: Clock, lock: threading.RLock,
                 after: Callable[[], None] = lambda: None,
                 on_error: Callable[[BaseException], None] = lambda e: None):
        self.clock = clock
        self.lock = lock
        self.after = after  # called under the lock after each batch of callbacks
        self.on_error = on_error
        self._heap: list[tuple[float, int, Callable]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition(threading.Lock())
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="autoflow-timers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def add(self, t: float, fn: Callable) -> None:
        with self._cv:
            heapq.heappush(self._heap, (t, next(self._seq), fn))
            self._cv.notify()

    def clear(self) -> None:
        with self._cv:
            self._heap.clear()

    def _due(self) -> list[Callable]:
        with self._cv:
            while not self._stop:
                if self._heap:
                    wait = self.clock.wall_delay(self._heap[0][0])
                    if wait <= 0:
                        break
                    self._cv.wait(min(wait, 1.0))
                else:
                    self._cv.wait(1.0)
            if self._stop:
                return []
            now = self.clock.now()
            fns = []
            while self._heap and self._heap[0][0] <= now:
                fns.append(heapq.heappop(self._heap)[2])
            return fns

    def _run(self) -> None:
        while not self._stop:
            fns = self._due()
            if not fns:
                continue
            with self.lock:
                try:
                    for fn in fns:
                        fn()
                except Exception as e:  # noqa: BLE001 (a bug: reported; the service keeps serving)
                    self.on_error(e)
                finally:
                    self.after()
