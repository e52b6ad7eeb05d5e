"""The composition root: build every part from config, start them, stop them cleanly."""

from __future__ import annotations

import contextlib
import logging
import signal
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from gateway import systemd
from gateway.clock import Clock, SystemClock
from gateway.config import Config, load_config
from gateway.diskspace import is_disk_full
from gateway.errors import ConfigError, JournalError
from gateway.folders import intake_uses_polling, prepare_folders
from gateway.intake.loop import IntakeLoop
from gateway.intake.service import Intake, expire_overdue
from gateway.jobs.guard import FullDiskGuard
from gateway.jobs.retention import run_retention
from gateway.journal.claims import LEASE_SECONDS as CLAIM_LEASE_SECONDS
from gateway.journal.claims import Claims, FencedOut, HeldClaims
from gateway.journal.commit import CommitFailed
from gateway.journal.engines import engine_for
from gateway.journal.lock import InstanceLock
from gateway.journal.nodes import LEASE_SECONDS, NodeNameTaken, NodeRegistry
from gateway.journal.outage import OutageLogFilter
from gateway.journal.store import Journal
from gateway.ops import checks
from gateway.ops.disk import intake_hold_reason
from gateway.ops.health import Heartbeats
from gateway.ops.reload import plan_reload
from gateway.ops.watchdog import LastProblem, Watchdog
from gateway.receipts.writer import StatusWriter
from gateway.signals import CaughtSignals
from gateway.wiring import NetworkParts, SenderLoop, build_network

log = logging.getLogger(__name__)

EXPIRY_SWEEP_SECONDS = 15
STATUS_FLUSH_SECONDS = 5
JOURNAL_PROBE_SECONDS = 1.0  # while the journal's database does not answer, how often it is asked again
PICK_UP_SECONDS = 2.0


class Daemon:
    def __init__(
        self, config: Config, clock: Clock | None = None, load: Callable[[Path], Config] = load_config
    ) -> None:
        """`load` reads config.yaml again on SIGHUP (the sandbox command adds its network settings)."""
        self.config = config
        self.clock = clock or SystemClock()
        self._load = load
        self.heartbeats = Heartbeats(config.ops.heartbeat_grace_seconds)
        self.last_problem = LastProblem()
        self.restart_needed: tuple[str, ...] = ()
        self.reload_refused: str | None = None
        self.hold_reason = intake_hold_reason(lambda: self.config)
        self.ops: Any = None  # gateway.ops.service.OpsEndpoint when ops.enabled
        self.watchdog: Watchdog | None = None
        self._stopped = threading.Event()
        self._stopping = threading.Event()  # stop() has begun: the clients background work uses may be closed
        self.lock: InstanceLock | None = None
        self.journal: Journal | None = None
        self.node: NodeRegistry | None = None
        self.held: HeldClaims | None = None
        self.loop: IntakeLoop | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.network: NetworkParts | None = None
        self.sender_loop: SenderLoop | None = None

    def start(self) -> None:
        config = self.config
        logging.getLogger().addHandler(self.last_problem)
        logging.getLogger("apscheduler.scheduler").addFilter(_skipped_run_filter)
        prepare_folders(config)
        if config.keystore.configured:
            for warning in checks.keystore_warnings(config, self.clock.now()):
                log.warning("%s", warning)
        self.lock = InstanceLock(config.folders.lock_path)
        self.lock.acquire()
        self.journal = Journal(engine_for(config.journal, config.folders.journal_path), self.clock)
        self._outage_filter = OutageLogFilter(self.journal.outage)
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._outage_filter)
        self.node = NodeRegistry(self.journal, config.node.resolved_name, self.clock)
        self.node.join()  # a live node of the same name stops this start, in one line
        # Nodes sharing the journal (PostgreSQL) share the work by claims; SQLite's one node needs none.
        self.held = (HeldClaims(Claims(self.journal, config.node.resolved_name, self.clock))
                     if self.journal.engine.locks_rows else None)
        self.statuses = StatusWriter(self.journal, config.folders.status, self.clock, config.folders.group_id)
        if self.held is not None:
            held = self.held
            self.statuses.one_node_at_a_time = lambda: held.lease("job:status-files")
            self.statuses.still_ours = lambda: held.still_held("job:status-files")
        if config.ops.enabled:
            from gateway.ops.service import OpsEndpoint  # prometheus_client and uvicorn: only when it is on

            self.ops = OpsEndpoint(self)
        if config.network_configured:
            self.network = build_network(
                config, self.journal, self.statuses, self.clock, self.ops.http_outcomes if self.ops else None,
                held=self.held,
            )
            self.sender_loop = SenderLoop(self.network.sender, config.network.send_interval_seconds)
            self.sender_loop.held = lambda: self.journal is not None and self.journal.outage.down
            self.sender_loop.on_round = lambda: self.heartbeats.beat("sender")
            threading.Thread(target=self._probe_network, name="probe", daemon=True).start()
        else:
            log.warning(
                "no network in %s (service registry, token endpoint and a channel): drops are accepted and "
                "journaled, but not sent", config.source,
            )
        if self.ops:
            self.ops.start()  # before any worker runs: a port taken stops the start cleanly
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
        self.loop.on_round = lambda: self.heartbeats.beat("intake", self.intake.trouble)
        self.loop.hold_reason = self.hold_reason
        self.loop.paused = lambda: self.journal is not None and self.journal.outage.down
        self.heartbeats.register("intake", config.intake.scan_interval_seconds)
        self.loop.start()
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._schedule("expiry", self._expire, EXPIRY_SWEEP_SECONDS, once=True)
        self._schedule("status-flush", self.statuses.flush, STATUS_FLUSH_SECONDS)
        self._schedule("retention", self._retention, config.retention.purge_interval_minutes * 60, once=True)
        if self.held is not None:
            self._schedule("claims-renew", self.held.renew, CLAIM_LEASE_SECONDS / 3)
        self._schedule("node-heartbeat", self._node_heartbeat, LEASE_SECONDS / 3)
        self._schedule("journal-probe", self._probe_journal, JOURNAL_PROBE_SECONDS, during_outage=True)
        if self.network and self.sender_loop:
            self.heartbeats.register("sender", config.network.send_interval_seconds)
            self.sender_loop.start()
            for job in self.network.jobs:
                self._schedule(job.name, job.run, job.seconds, once=job.once)
            self._schedule("pick-up", self._after_delivery, PICK_UP_SECONDS, once=True)
            if self.held is not None:  # nodes share the status messages owed, each claimed by one node
                self._schedule("status-send", self.network.status_sender.send_due, PICK_UP_SECONDS)
        self.scheduler.start()
        systemd.notify("READY=1")
        self.watchdog = Watchdog(self.heartbeats, systemd.watchdog_interval(), self.status_line)
        self.watchdog.start()
        log.info(
            "efm-gateway is running for organisation %s; outbox %s", config.organisation.orgnr, config.folders.outbox
        )

    def _schedule(self, name: str, run: Callable[[], object], seconds: float, during_outage: bool = False,
                  once: bool = False) -> None:
        """A periodic job that beats after each run (one that hangs stops the watchdog), and says a full disk in
        one line rather than a traceback at every run. Unless `during_outage`, it does nothing while the journal's
        database does not answer. A job run `once` runs on one node at a time where nodes share the journal."""
        if once and self.held is not None:
            run = self._on_one_node(name, run)
        assert self.scheduler is not None
        self.heartbeats.register(name, seconds)
        folders = self.config.folders
        guarded = FullDiskGuard(name, run if during_outage else self._unless_journal_down(name, run), folders.state,
                                [folders.status, folders.inbox, folders.inbox_staging, folders.sent, folders.failed,
                                 folders.work_area])
        self.scheduler.add_job(
            self.heartbeats.beating(name, guarded), "interval", seconds=seconds, id=name, name=name,
            max_instances=1, coalesce=True, misfire_grace_time=60,
        )

    def _on_one_node(self, name: str, run: Callable[[], object]) -> Callable[[], None]:
        """`run` under the lease `job:<name>`: a node whose run finds another holding it skips this run; its own
        run's journal steps are fenced by the lease's token, and the lease is let go after the run."""
        held = self.held
        assert held is not None

        def job() -> None:
            claim = held.take(f"job:{name}")
            if claim is None:
                return
            try:
                with held.fencing(claim):
                    run()
            except FencedOut:
                return  # the lease lapsed while this node stood still and another node has the job now: said once
            finally:
                with contextlib.suppress(sqlite3.Error, JournalError):
                    held.let_go(claim)

        return job

    def _unless_journal_down(self, name: str, run: Callable[[], object]) -> Callable[[], None]:
        """A job that takes no new work while the journal's database does not answer (the outage's line says why). A
        run whose step the database gave up (its commit failed: a session ended under it, a node woken from a stall)
        is one line, and the next run tries again; a full disk goes on to FullDiskGuard's line."""

        def job() -> None:
            if self.journal is not None and self.journal.outage.down:
                return
            try:
                run()
            except CommitFailed as exc:
                if is_disk_full(exc):
                    raise
                log.warning("job %s: the journal did not take this run's step (%s); its next run tries again",
                            name, exc)

        return job

    def _probe_journal(self) -> None:
        """While the outage lasts, the database is asked once a second; its answer ends the outage (one line)."""
        assert self.journal is not None
        if self.journal.outage.down and self.journal.probe() and self.loop is not None:
            self.loop.wake.set()

    def _node_heartbeat(self) -> None:
        assert self.node is not None
        try:
            self.node.beat()
        except NodeNameTaken as exc:
            # Another node took this one's name while its heartbeat lapsed (a long stall): two nodes must never
            # run under one name, so this one stops, as SIGTERM would stop it.
            log.error("%s", exc)
            signal.raise_signal(signal.SIGTERM)

    def _probe_network(self) -> None:
        outcomes = self.ops.http_outcomes if self.ops else None
        for warning in checks.reachability_warnings(self.config, outcomes=outcomes):
            log.warning("%s", warning)
        for line in checks.outbound_lines(self.config):  # the way the probe took, and every request takes
            log.info("%s", line)
        parts = self.network
        if parts is None or parts.auth is None or parts.identity is None or parts.trust is None:
            return
        from gateway.ops.online import OK, online_checks

        # The daemon keeps running whatever these say (messages wait for what is missing): each finding is one
        # warning line with its fix; check-config --online shows the same on demand.
        try:
            results = online_checks(self.config, parts.identity, parts.trust, parts.auth, parts.http_clients[0],
                                    self.clock)
        except Exception:
            if self._stopping.is_set():
                return  # stopped while the checks were under way: their clients are closed
            raise
        for result in results:
            if result.level != OK and result.key != "keystore":  # the certificate's life: said above at start
                log.warning("start-up check: %s", result.line)

    def status_line(self) -> str:
        """systemd's STATUS=: what waits, what is under way, what failed, and the last problem."""
        parts = []
        if self.journal is not None:
            counts = self.journal.counts()
            parts.append(
                f"queued {counts.get('accepted', 0)}, sending {counts.get('sending', 0)}, "
                f"failed {counts.get('failed', 0)}"
            )
        late = [worker.name for worker in self.heartbeats.late()]
        if late:
            parts.append(f"late: {', '.join(late)}")
        parts.extend(f"{worker.name}: {worker.trouble}" for worker in self.heartbeats.workers() if worker.trouble)
        held = self.hold_reason()
        if held:
            parts.append("intake held: disk under its floor")
        if self.restart_needed:
            parts.append(f"restart needed for {', '.join(self.restart_needed)}")
        if self.reload_refused:
            parts.append(f"reload refused: {self.reload_refused}")
        if self.last_problem.text:
            parts.append(f"last problem: {self.last_problem.text}")
        return "; ".join(parts)

    def reload(self) -> None:
        """SIGHUP: read config.yaml again; apply what can change live, name what needs a restart."""
        source = self.config.source
        try:
            fresh = self._load(source)
        except (ConfigError, OSError) as exc:
            if isinstance(exc, OSError):
                exc = ConfigError(f"{source}: cannot read it ({exc.strerror}); fix its permissions")
            self.reload_refused = str(exc)
            log.error("reload refused, running on with the configuration loaded before: %s", exc)
            systemd.notify(f"STATUS={self.status_line()}")
            return
        self.reload_refused = None
        plan = plan_reload(self.config, fresh)
        applied = ", ".join(f"{key}={value}" for key, value in plan.live.items()) or "nothing changed"
        # Logged at the more talkative of the old and new levels: a new level must not hide its own change.
        root = logging.getLogger()
        root.setLevel(min(root.level, logging.getLevelName(fresh.logging.level)))
        log.info("reloaded %s: applied %s", source, applied)
        if plan.needs_restart:
            log.warning(
                "reloaded %s: these changes wait for a restart: %s", source, ", ".join(plan.needs_restart)
            )
        self.config = plan.effective
        self.restart_needed = plan.needs_restart
        self._apply(plan.live)
        systemd.notify(f"STATUS={self.status_line()}")

    def _apply(self, live: dict[str, object]) -> None:
        config = self.config
        logging.getLogger().setLevel(config.logging.level)
        if "ops.heartbeat_grace_seconds" in live:
            self.heartbeats.grace_seconds = config.ops.heartbeat_grace_seconds
        self.intake.config = config
        self.intake.scanner.quiet_period = config.intake.quiet_period_seconds
        self.intake.scanner.incomplete_timeout = config.intake.incomplete_timeout_seconds
        if self.loop is not None:
            self.loop.scan_interval = config.intake.scan_interval_seconds
            self.heartbeats.set_interval("intake", config.intake.scan_interval_seconds)
            self.loop.wake.set()
        if self.sender_loop is not None:
            self.sender_loop.interval = config.network.send_interval_seconds
            self.heartbeats.set_interval("sender", config.network.send_interval_seconds)
            self.sender_loop.wake.set()
        intervals = {"retention": ("retention.purge_interval_minutes", config.retention.purge_interval_minutes * 60)}
        for job in self.network.jobs if self.network else ():
            intervals[job.name] = (job.config_key, _dotted(config, job.config_key))
        assert self.scheduler is not None
        for job_name, (key, seconds) in intervals.items():
            if key in live:
                self.scheduler.reschedule_job(job_name, trigger="interval", seconds=seconds)
                self.heartbeats.set_interval(job_name, seconds)

    def _after_delivery(self) -> None:
        assert self.network is not None
        failed: BaseException | None = None
        try:
            self.network.inbox.check_picked_up()
        except (OSError, sqlite3.Error) as exc:  # a full disk, say: the owed status messages still go
            failed = exc
        if self.held is None:  # else every node sends them: the job status-send
            self.network.status_sender.send_due()
        if failed is not None and is_disk_full(failed):
            raise failed  # the job's guard says it once, not at every check
        if failed is not None:
            log.error("checking the inbox for picked-up messages failed: %s; the next check tries again", failed)

    def _expire(self) -> None:
        assert self.journal is not None
        expired = expire_overdue(self.journal, self.intake, self.clock)
        if expired:
            log.info("%d message(s) passed their deadline unsent: LEVETID_UTLOPT", expired)
            self.statuses.flush()

    def _retention(self) -> None:
        assert self.journal is not None
        self.statuses.remove_leftovers()
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
        self._stopping.set()
        systemd.notify("STOPPING=1")
        if self.watchdog:
            self.watchdog.stop()
        if self.ops:
            self.ops.stop()
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
            if self.node:
                self.node.leave()
            self.journal.close()
        if self.lock:
            self.lock.release()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(getattr(self, "_outage_filter", None))
        logging.getLogger().removeHandler(self.last_problem)
        logging.getLogger("apscheduler.scheduler").removeFilter(_skipped_run_filter)
        self._stopped.set()

    def run_forever(self, early_signals: CaughtSignals | None = None) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly. `early_signals` holds a SIGHUP caught before this was
        called (the command line catches it from its first moment): that reload is done once running."""
        # Set before start: a SIGHUP during start-up must not kill the daemon (Python's default would). A
        # SIGTERM during start-up is noticed once it has finished.
        caught = CaughtSignals((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
        pending = early_signals.take() if early_signals is not None else set()
        self.start()
        try:
            while True:
                pending |= caught.wait()
                stop = pending & {signal.SIGTERM, signal.SIGINT}
                if stop:
                    log.info("received %s; stopping", min(stop).name)
                    break
                if signal.SIGHUP in pending:
                    log.info("received SIGHUP; reading %s again", self.config.source)
                    try:
                        self.reload()
                    except Exception:
                        log.exception("the reload failed; running on with the configuration loaded before")
                pending = set()
        finally:
            self.stop()


def _dotted(config: Config, key: str) -> float:
    value: object = config
    for part in key.split("."):
        value = getattr(value, part)
    assert isinstance(value, int | float)
    return float(value)


def _skipped_run_filter(record: logging.LogRecord) -> bool:
    """APScheduler warns at every interval that a job still running was skipped; for a hung job the
    watchdog says so once, by name ("worker ... has not reported")."""
    return "maximum number of running instances reached" not in record.getMessage()
