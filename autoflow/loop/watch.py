"""``autoflow serve --self-optimize``: the serving policy follows the registry's champion.

A worker of the service (``ChampionWatcher``) reads the model registry kept in the
service's own store (``loop.registry``) every ``interval_s`` seconds. When the
``champion`` alias points at a model the service is not serving, it switches the serving
policy to ``rl:<the registry's stored copy of that model>`` through ``Engine.set_policy``:
decisions already issued stand, the next scheduling pass is the new champion's. The
switch is recorded in the store's policy history as made by ``self-optimize`` with the
model's sha256, so it appears in ``GET /v1/policy``, ``/metrics``
(``autoflow_policy_info``, ``autoflow_policy_switches_total``,
``autoflow_champion_info`` with the registry's event and reason) and on the dashboard
(``self_optimize``: the champion, the event that made it champion and why). A rollback
(``autoflow models rollback``) is followed the same way. The model is loaded only from
the registry's copy, its hash checked again (``Registry.path_of``).

The loop that makes the champions from the service's own outcomes is ``loop.online``.
"""

from __future__ import annotations

import logging
import threading

from .registry import Registry, default_files_dir

WATCH_S = 5.0  # seconds between reads of the registry
WHO = "self-optimize"  # the policy history's "token" of the switches it makes

log = logging.getLogger("autoflow.loop.watch")


class ChampionWatcher:
    def __init__(self, service, interval_s: float = WATCH_S, files_dir=None):
        self.service = service
        self.engine = service.engine
        self.interval_s = interval_s
        url = service.config.db
        self.registry = Registry(url, files_dir or default_files_dir(url))
        self.serving: str | None = None  # sha256 of the champion being served
        self.swaps = 0
        self.event: dict | None = None  # the registry event that made the served champion
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoflow-self-optimize",
                                        daemon=True)

    def start(self) -> None:
        self.check_once()  # the champion serves from the first pass, if there is one
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.registry.close()

    def check_once(self) -> bool:
        """Serves the champion if it is not served yet; True if it switched."""
        champ = self.registry.alias("champion")
        if champ is None or champ["sha256"] == self.serving:
            return False
        sha = champ["sha256"]
        path = self.registry.path_of(sha)
        self.engine.set_policy(f"rl:{path}", WHO, sha)
        self.serving = sha
        self.event = next((e for e in self.registry.events(20) if e["alias"] == "champion"
                           and e["sha256"] == sha), None)
        self.swaps += 1
        log.info("self-optimize: now serving champion %s (%s): %s", sha[:12], champ.get("name"),
                 (self.event or {}).get("reason"))
        return True

    def view(self) -> dict:
        """The served champion and the registry's event (promote, rollback, set) that made
        it champion, with its reason."""
        e = self.event or {}
        return {"serving": self.serving, "swaps": self.swaps, "errors": self.errors,
                "event": e.get("action"), "reason": e.get("reason"), "at": e.get("at")}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception as e:  # noqa: BLE001 - the service keeps serving what it has
                self.errors += 1
                log.error("self-optimize: the champion could not be served: %s", e)
