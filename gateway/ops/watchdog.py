"""Feeds systemd's watchdog only while every worker beats, and keeps STATUS= a one-line summary."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway import systemd
from gateway.ops.health import Heartbeats

log = logging.getLogger(__name__)

STATUS_EVERY_S = 2.0
MAX_ERROR_CHARS = 160
# The watchdog's own check later than its tick by this much: the daemon as a whole stood still (SIGSTOP, a frozen
# or suspended VM), not one of its workers. A thread waiting on a 2 s timer is not held up that long by load alone.
STOOD_STILL_SECONDS = 10.0


class LastProblem(logging.Handler):
    """Remembers the last WARNING or worse the daemon logged, for STATUS= and /healthz."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().splitlines()[0] if record.getMessage() else record.levelname
        except Exception:  # a bad log call must not break logging
            return
        self.text = text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class Watchdog:
    """A thread of its own (not a scheduler job: a scheduler whose threads hang would still ping)."""

    def __init__(
        self,
        heartbeats: Heartbeats,
        watchdog_interval: float | None,
        summary: Callable[[], str],
    ) -> None:
        self.heartbeats = heartbeats
        self.watchdog_interval = watchdog_interval
        self.summary = summary
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._late_names: tuple[str, ...] = ()
        self._status = ""
        self.tick = min(watchdog_interval or STATUS_EVERY_S, STATUS_EVERY_S)
        self._checked_at: float | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:
                log.exception("the watchdog check failed; trying again")
            if self._stop.wait(self.tick):
                return

    def check(self) -> None:
        try:
            self._check()
        finally:  # a check that took long itself (its summary waited for the journal) is no standing still
            self._checked_at = self.heartbeats.now()

    def _check(self) -> None:
        self._excuse_standing_still()
        late = self.heartbeats.late()
        names = tuple(worker.name for worker in late)
        if names != self._late_names:
            for worker in late:
                if worker.name not in self._late_names:
                    log.error(
                        "worker %s has not reported for %.0f s (it runs every %g s); %s",
                        worker.name, worker.seconds_since_beat, worker.interval,
                        "systemd's watchdog is no longer fed" if self.watchdog_interval else "see /healthz",
                    )
            for name in self._late_names:
                if name not in names:
                    log.info("worker %s reports again", name)
            self._late_names = names
        if not late and self.watchdog_interval:
            systemd.notify("WATCHDOG=1")
        status = self.summary()
        if status != self._status:
            systemd.notify(f"STATUS={status}")
            self._status = status

    def _excuse_standing_still(self) -> None:
        """A check that comes far later after the last one ended than its tick: the daemon stood still, and every
        worker with it. Said once, and not taken for a hang of each worker (a line each, and systemd's watchdog unfed
        until the slowest ran again)."""
        now = self.heartbeats.now()
        if self._checked_at is not None:
            stood_still = now - self._checked_at - self.tick
            if stood_still > STOOD_STILL_SECONDS:
                log.warning("the daemon did not run for %.0f s (its process was stopped, or its machine frozen or "
                            "suspended); its workers' silence through it is not taken for a hang", stood_still)
                self.heartbeats.excuse(stood_still)
