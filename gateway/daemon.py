"""The composition root: build every part from config, start them, stop them cleanly."""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from gateway import systemd
from gateway.clock import Clock, SystemClock
from gateway.config import Config, intake_uses_polling, prepare_folders
from gateway.intake.loop import IntakeLoop
from gateway.intake.service import Intake, expire_overdue
from gateway.jobs.retention import run_retention
from gateway.journal.store import InstanceLock, Journal
from gateway.receipts.writer import StatusWriter
from gateway.wiring import NetworkParts, SenderLoop, build_network

log = logging.getLogger(__name__)

EXPIRY_SWEEP_SECONDS = 15
STATUS_FLUSH_SECONDS = 5
PICK_UP_SECONDS = 2.0


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._stopped = threading.Event()
        self.lock: InstanceLock | None = None
        self.journal: Journal | None = None
        self.loop: IntakeLoop | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.network: NetworkParts | None = None
        self.sender_loop: SenderLoop | None = None

    def start(self) -> None:
        config = self.config
        prepare_folders(config)
        self.lock = InstanceLock(config.folders.lock_path)
        self.lock.acquire()
        self.journal = Journal(config.folders.journal_path, self.clock)
        self.statuses = StatusWriter(self.journal, config.folders.status, self.clock)
        if config.network_configured:
            self.network = build_network(config, self.journal, self.statuses, self.clock)
            self.sender_loop = SenderLoop(self.network.sender, config.network.send_interval_seconds)
        else:
            log.warning(
                "no network in %s (service registry, token endpoint and a channel): drops are accepted and "
                "journaled, but not sent", config.source,
            )
        wake_sender = self.sender_loop.wake.set if self.sender_loop else None
        self.intake = Intake(
            config,
            self.journal,
            self.statuses,
            self.clock,
            on_accepted=(lambda *_: wake_sender()) if wake_sender else None,
        )
        self.intake.recover()
        if self.network:
            self.network.inbox.recover()
        polling, why = intake_uses_polling(config)
        log.info("intake: %s", why)
        self.loop = IntakeLoop(self.intake, config.intake.scan_interval_seconds, use_events=not polling)
        self.loop.start()
        self.scheduler = BackgroundScheduler(timezone="UTC")
        defaults = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 60}
        self.scheduler.add_job(self._expire, "interval", seconds=EXPIRY_SWEEP_SECONDS, id="expiry", **defaults)
        self.scheduler.add_job(
            self.statuses.flush, "interval", seconds=STATUS_FLUSH_SECONDS, id="status-flush", **defaults
        )
        self.scheduler.add_job(
            self._retention, "interval", minutes=config.retention.purge_interval_minutes, id="retention", **defaults
        )
        if self.network and self.sender_loop:
            self.sender_loop.start()
            for job in self.network.jobs:
                self.scheduler.add_job(job.run, "interval", seconds=job.seconds, id=job.name, **defaults)
            self.scheduler.add_job(self._after_delivery, "interval", seconds=PICK_UP_SECONDS, id="pick-up", **defaults)
        watchdog = systemd.watchdog_interval()
        if watchdog:
            self.scheduler.add_job(systemd.notify, "interval", seconds=watchdog, args=["WATCHDOG=1"], id="watchdog")
        self.scheduler.start()
        systemd.notify("READY=1")
        log.info(
            "efm-gateway is running for organisation %s; outbox %s", config.organisation.orgnr, config.folders.outbox
        )

    def _after_delivery(self) -> None:
        assert self.network is not None
        try:
            self.network.inbox.check_picked_up()
        except (OSError, sqlite3.Error) as exc:  # a full disk, say: the owed status messages still go
            log.error("checking the inbox for picked-up messages failed: %s; the next check tries again", exc)
        self.network.status_sender.send_due()

    def _expire(self) -> None:
        assert self.journal is not None
        expired = expire_overdue(self.journal, self.intake, self.clock)
        if expired:
            log.info("%d message(s) passed their deadline unsent: LEVETID_UTLOPT", expired)
            self.statuses.flush()

    def _retention(self) -> None:
        assert self.journal is not None
        retention = self.config.retention
        run_retention(
            self.journal,
            self.config.folders.sent,
            self.config.folders.status,
            self.clock,
            retention.sent_days,
            retention.journal_days,
        )

    def stop(self) -> None:
        systemd.notify("STOPPING=1")
        if self.scheduler:
            self.scheduler.shutdown(wait=True)
        if self.loop:
            self.loop.stop()
        if self.sender_loop:
            self.sender_loop.stop()
        if self.network:
            self.network.close()
        if self.journal:
            self.statuses.close()  # its flusher reads the journal: stop it before the journal closes
            self.journal.close()
        if self.lock:
            self.lock.release()
        self._stopped.set()

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        stop_requested = threading.Event()

        def request_stop(signum: int, _frame: object) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            stop_requested.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.start()
        try:
            while not stop_requested.wait(timeout=1):
                pass
        finally:
            self.stop()
