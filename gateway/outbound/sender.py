"""Send accepted messages: route → pack → send, journaling before each side effect.

A message moves ACCEPTED → SENDING (package ready, committed) → SENT. The channel's reference is
journaled before the upload, so an interrupted send resumes on the same transfer, and an upload
that finished before a crash is recognised instead of repeated. Retryable errors back off per
message; permanent ones end it in FEIL with the reason in the status file.

Two stages: a few workers (`network.max_parallel_sends`) route, compose, sign and encrypt; each
channel's transport stage then keeps up to its `max_in_flight` sends on the wire. Latency costs a
transport slot while a request is under way, never a worker that could be packing the next message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import shutil
import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.channels.base import Channel, Package
from gateway.clock import Clock
from gateway.config import Config
from gateway.contract.statuses import Status
from gateway.delivery.backoff import RetryPolicy, retry_after_of
from gateway.delivery.circuit import ChannelCircuit, ChannelPaused, Circuits
from gateway.diskspace import DiskFull, DiskPause, full_folder, is_disk_full
from gateway.drops.claims import parse_claim_id
from gateway.drops.parking import park_claim
from gateway.errors import ChannelError, JournalError, PermanentChannelError, RetryableChannelError, ValidationError
from gateway.journal import originals
from gateway.journal.claims import Claim, FencedOut, HeldClaims, gave_way, send_work
from gateway.journal.completion import settle
from gateway.journal.outage import outage_caused
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsetup import event_fields
from gateway.logsummary import RepeatedErrors, same_kind
from gateway.outbound.compose import compose, load_sidecar
from gateway.progress import progress
from gateway.receipts.writer import StatusWriter
from gateway.routing.registry import ServiceRecord, ServiceRegistryClient
from gateway.routing.resolver import route_for

log = logging.getLogger(__name__)

SENDABLE = (Phase.SENDING, Phase.ACCEPTED)
MIN_FREE_BYTES = 1 << 20  # beyond a drop's own needs, before sending goes on after a full disk
DEFAULT_IN_FLIGHT = 32  # sends on the wire at once per channel, unless the channel's block says otherwise
LEFT_AFTER_SECONDS = 60.0  # nodes sharing the work: originals not moved this long after their send were left behind


@dataclass
class _Ready:
    """A message packed for its channel, waiting for a transport slot."""

    record: MessageRecord
    channel: Channel
    circuit: ChannelCircuit
    package: Package
    route_fields: dict
    expects_receipt: bool
    claim_folder: Path
    probe: bool


class Sender:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        statuses: StatusWriter,
        clock: Clock,
        registry: ServiceRegistryClient,
        channels: Mapping[str, Channel],
        retry: RetryPolicy | None = None,
        circuits: Circuits | None = None,
        in_flight: Mapping[str, int] | None = None,
        held: HeldClaims | None = None,
    ) -> None:
        """`held`: this node's claims where several nodes share the journal (PostgreSQL); None on SQLite, whose one
        node needs none."""
        self.config = config
        self.held = held
        self._claims: dict[int, Claim] = {}  # row -> this node's claim on sending it
        self.journal = journal
        self.statuses = statuses
        self.clock = clock
        self.registry = registry
        self.channels = dict(channels)
        self.retry = retry or RetryPolicy()
        self.circuits = circuits or Circuits(clock)
        self.circuits.on_close(self._channel_answers_again)
        self.repeated = RepeatedErrors(log, noun="messages")
        self.disk = DiskPause(log, "sending")
        self.packages = config.folders.state / "outgoing"
        # Packages are a cache, rebuilt on demand: one torn by a power cut must never be uploaded.
        shutil.rmtree(self.packages, ignore_errors=True)
        self.packages.mkdir()
        preparing = config.network.max_parallel_sends
        self._pool = ThreadPoolExecutor(max_workers=preparing, thread_name_prefix="prepare")
        # Each channel's sends on the wire: blocked in I/O, a slot costs no CPU and little memory.
        in_flight = in_flight or {}
        slots = {channel.name: in_flight.get(channel.name, DEFAULT_IN_FLIGHT) for channel in self.channels.values()}
        self._transports = {
            name: ThreadPoolExecutor(max_workers=count, thread_name_prefix=f"send-{name.lower()}")
            for name, count in slots.items()
        }
        # Enough rows taken to fill every channel's slots and keep the packers busy; more would only
        # hold rows out of reach. A channel with its slots full and as many waiting takes no more, so
        # one channel's backlog never holds up another's messages.
        self._max_in_flight = sum(slots.values()) + preparing * 2
        self._channel_limit = {name: count + preparing for name, count in slots.items()}
        self._queued: dict[str, int] = dict.fromkeys(slots, 0)  # packed or on the wire, per channel
        self._probed: dict[int, str] = {}  # a probe's row -> the channel whose turn it holds
        self.on_free: Callable[[], None] | None = None
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._shuffle = random.Random()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for transport in self._transports.values():
            transport.shutdown(wait=True, cancel_futures=True)

    def send_due(self) -> int:
        """Start sending due messages, as many as there are free workers; returns how many were started."""
        self.repeated.flush()
        if not self.disk.may_go():
            return 0
        self._file_away_left()
        with self._lock:
            free = self._max_in_flight - len(self._in_flight)
            in_flight = set(self._in_flight)
            full = {name for name, queued in self._queued.items() if queued >= self._channel_limit[name]}
        paused = self.circuits.paused()
        probes: dict[int, str] = {}
        for channel in sorted(paused):
            if free <= 0:
                break
            probe = self.journal.next_waiting_row(SENDABLE, channel, exclude=in_flight)
            if probe is not None and self.circuits[channel].take_probe():
                probes[probe] = channel
                in_flight.add(probe)
                free -= 1
        now = self.clock.now().timestamp()
        if self.held is None:
            rows = self.journal.due_rows(SENDABLE, now, free, exclude=in_flight, exclude_channels=paused | full)
        else:
            # Nodes sharing the journal read the same due rows in the same order: each takes its share from a
            # window twice as wide, in an order of its own, so two nodes seldom reach for the same message.
            window = self.journal.due_rows(SENDABLE, now, 2 * free, exclude=in_flight,
                                           exclude_channels=paused | full, unclaimed_at=now)
            rows = self._shuffle.sample(window, len(window))
        started = 0
        for row in [*probes, *rows]:
            progress()
            if row not in probes and started >= free:
                break
            if self.held is not None:
                claim = self.held.take(send_work(row), fresh=row not in probes)  # most are first sends
                if claim is None:  # another node took it a moment ago
                    if row in probes:
                        self.circuits[probes.pop(row)].probe_done()
                    continue
                with self._lock:
                    self._claims[row] = claim
            with self._lock:
                self._in_flight.add(row)
                if row in probes:
                    self._probed[row] = probes[row]
            self._pool.submit(self._guarded, row, row in probes)
            if row not in probes:
                started += 1
        return len(probes) + started

    def _fencing(self, row: int) -> contextlib.AbstractContextManager[None]:
        """Every journal step about `row` checks this node's claim on it first (several nodes: see journal/claims)."""
        if self.held is None:
            return contextlib.nullcontext()
        with self._lock:
            claim = self._claims.get(row)
        return self.held.fencing(claim)

    def _stop_for_full_disk(self, record: MessageRecord, exc: BaseException) -> None:
        """Sending stops (one line) until the file system has room again; the message is not charged an attempt."""
        folders = [self.packages, self.config.folders.work_area, self.config.folders.sent,
                   self.config.folders.status, self.config.folders.state]
        folder = self.config.folders.state if isinstance(exc, sqlite3.Error) else full_folder(exc, folders)
        claimed = parse_claim_id(record.claim_id or "", self.config.folders.work_area)
        needed = _folder_bytes(claimed.folder) if claimed else 0
        full = DiskFull(folder, 2 * needed + MIN_FREE_BYTES)  # the package beside the drop, and a margin
        first = self.disk.stop(full)
        shutil.rmtree(self.packages / record.message_id, ignore_errors=True)  # a torn package only holds space
        if record.phase in SENDABLE:
            with contextlib.suppress(sqlite3.Error, JournalError):
                self.journal.update(record.row, next_attempt_at=self.clock.now().timestamp(),
                                    detail={**record.detail, "last_error": full.describe()})
        if first:
            log.error("message %s could not be prepared: %s (%s); sending stops until there is room, then goes on "
                      "by itself", record.message_id, full.describe(), exc)

    def _channel_answers_again(self, channel: str) -> None:
        """A probe got through: what waits for `channel` is due now, not at the end of its own back-off."""
        waiting = self.journal.make_due(SENDABLE, channel)
        if waiting:
            log.info("%s: %d waiting message(s) are due now", channel, waiting)
        if self.on_free is not None:
            self.on_free()

    def _guarded(self, row: int, probe: bool = False) -> None:
        """The prepare stage: a packed message goes on to its channel's transport stage."""
        with self._fencing(row):
            self._prepare_guarded(row, probe)

    def _prepare_guarded(self, row: int, probe: bool) -> None:
        handed_on: str | None = None
        try:
            ready = self._prepare(self.journal.get(row), probe)
            if ready is not None:
                name = ready.channel.name
                with self._lock:
                    self._queued[name] = self._queued.get(name, 0) + 1
                handed_on = name
                self._transports[name].submit(self._transmit_guarded, ready)
        except Exception as exc:  # sorted in _trouble: expected ones in a line, bugs with a traceback
            try:
                if not (isinstance(exc, RuntimeError) and str(exc).startswith("cannot schedule new futures")):
                    self._trouble(row, exc)
                # else: the daemon is stopping; the message waits, packed again at the next start
            finally:
                self._release(row, handed_on)
        else:
            if handed_on is None:
                self._release(row, None)

    def _transmit_guarded(self, ready: _Ready) -> None:
        """The transport stage: one send on the wire, in one of the channel's slots."""
        try:
            with self._fencing(ready.record.row):
                self._transmit(ready)
        except Exception as exc:  # sorted in _trouble
            self._trouble(ready.record.row, exc)
        finally:
            self._release(ready.record.row, ready.channel.name)

    def _trouble(self, row: int, exc: Exception) -> None:
        if outage_caused(exc) or isinstance(exc, FencedOut):
            # Nothing about it can be journaled now: the row is due again once the database answers, or it is
            # another node's now (FencedOut said so in one line; its originals may have moved on with it).
            return
        taken_over = self._taken_over(row)
        if taken_over:
            return  # another node's now (said in one line); what this node met is of a send that went on without it
        if isinstance(exc, OSError | sqlite3.OperationalError):
            if taken_over is None:
                return  # whose it is cannot be told, nor anything journaled: the outage's line says why
            # The machine, not the message: a full disk, a folder we may not write. One line, and later again.
            record = self.journal.get(row)
            if is_disk_full(exc):
                self._stop_for_full_disk(record, exc)
            elif record.phase in SENDABLE:
                self._later(record, f"a file could not be written ({exc})", level=logging.ERROR)
            else:
                log.error("message %s: a file could not be written (%s)", record.message_id, exc)
            return
        # One message's failure never stops the others; it is tried again later (a bug: its traceback, even during an
        # outage, when the row cannot be journaled and is due again once the database answers).
        log.error("sending journal row %d failed unexpectedly; it will be tried again", row, exc_info=exc)
        if taken_over is not None:
            self._later(self.journal.get(row), "an unexpected error; see the log")

    def _taken_over(self, row: int) -> bool | None:
        """Where nodes share the work: whether this node's claim on `row` was taken over (said in one line); None when
        that cannot be told while the database does not answer (its outage is said in its own line; the row is due
        again once it answers, to whichever node holds it then)."""
        if self.held is None:
            return False
        failure: BaseException | None = None
        for _ in range(2):  # a node woken from a pause may find its session ended: that step fails, the next reconnects
            try:
                with self._fencing(row), self.journal.transaction():
                    pass
            except FencedOut:
                return True
            except (sqlite3.Error, JournalError) as exc:
                if not (outage_caused(exc) or gave_way(exc)):
                    return False
                failure = exc
            else:
                return False
        return None if outage_caused(failure) else False

    def _release(self, row: int, queued_on: str | None) -> None:
        """The row is done with (for this try): its slot, its channel's queue place and its probe's turn freed."""
        with self._lock:
            self._in_flight.discard(row)
            claim = self._claims.pop(row, None)
            probed = self._probed.pop(row, None)
            if queued_on is not None:
                self._queued[queued_on] -= 1
        if probed is not None:
            self.circuits[probed].probe_done()  # a probe that never reached the channel frees its turn
        if claim is not None and self.held is not None:
            with contextlib.suppress(sqlite3.Error, JournalError):  # unreleased, it lapses with its lease
                self.held.let_go(claim)
        if self.on_free is not None:
            self.on_free()  # a slot is free: fetch the next due message now, not at the next interval
        self.statuses.flush_soon()  # a send never waits for other messages' status files

    def send_one(self, record: MessageRecord, probe: bool = False) -> None:
        """One try at `record`, both stages in the calling thread; a `probe` tests its channel's paused
        circuit (and is sent even though it waits)."""
        ready = self._prepare(record, probe)
        if ready is not None:
            self._transmit(ready)

    def _prepare(self, record: MessageRecord, probe: bool = False) -> _Ready | None:
        """Route, compose, validate and pack `record`; None when it was settled here (failed, held, expired)."""
        if record.phase not in (Phase.ACCEPTED, Phase.SENDING):
            return None
        if record.deadline is not None and record.deadline <= self.clock.now():
            if self._finished_before_a_crash(record):
                return None
            if record.detail.get("last_error"):
                self._fail(record, [deadline_failure(record.detail["last_error"])])
            else:
                self._expire(record)
            return None
        claimed = parse_claim_id(record.claim_id or "", self.config.folders.work_area)
        if claimed is None or not claimed.folder.exists():
            self._fail(record, [f"the claimed drop for message {record.message_id} is gone from the work area"])
            return None
        route_fields: dict = {}
        circuit: ChannelCircuit | None = None  # known once the channel is
        try:
            sidecar = load_sidecar(claimed.folder, record.detail["sidecar"])
            route_fields, service = self._route(record, sidecar.message_type, sidecar.security_level, sidecar.channel,
                                                sidecar.options)
            channel_name = route_fields.get("channel", record.channel)
            channel = self.channels.get(channel_name or "")
            if channel is None:
                reason = route_fields.get("route_reason", record.route_reason)
                raise PermanentChannelError(
                    f"{channel_name} is the receiver's channel ({reason}), but it is not enabled in this gateway's "
                    f"configuration (channels section)"
                )
            message = compose(record, sidecar, claimed.folder, self.clock.now())
            problems = channel.validate(message, service)
            if problems:
                raise PermanentChannelError("; ".join(problems))
            circuit = self.circuits[channel.name]
            if circuit.is_open and not probe:
                self._hold(record, channel.name, circuit.seconds_left(), route_fields)
                return None
            package = channel.prepare(message, service, self.packages / record.message_id)
            expects_receipt = channel.capabilities.expects_receipt(sidecar.message_type)
            route_fields["route_reason"] = _with_note(
                route_fields.get("route_reason", record.route_reason), channel.describe(package)
            )
        except RetryableChannelError as exc:
            self._later(record, str(exc), route_fields, retry_after_of(exc),
                        channel_working=circuit is not None and circuit.working())
            return None
        except (PermanentChannelError, ValidationError) as exc:
            self._fail(record, [str(exc)], route_fields)
            return None
        return _Ready(record, channel, circuit, package, route_fields, expects_receipt, claimed.folder, probe)

    def _transmit(self, ready: _Ready) -> None:
        """Hand the package to its channel; SENDT, a retry later, or FEIL."""
        channel, circuit, route_fields = ready.channel, ready.circuit, ready.route_fields
        # It may have waited for a slot: settled meanwhile (the expiry sweep, an operator), or its channel
        # paused by another send's 429 or 503, it is not sent now.
        record = self.journal.get(ready.record.row)
        if record.phase not in SENDABLE:
            shutil.rmtree(self.packages / record.message_id, ignore_errors=True)
            return
        if record.deadline is not None and record.deadline <= self.clock.now():
            shutil.rmtree(self.packages / record.message_id, ignore_errors=True)
            self.journal.update(record.row, next_attempt_at=self.clock.now().timestamp())  # the next pass settles it
            return
        if circuit.is_open and not ready.probe:
            shutil.rmtree(self.packages / record.message_id, ignore_errors=True)
            self._hold(record, channel.name, circuit.seconds_left(), route_fields)
            return

        def remember(reference: str) -> None:
            # One commit before the upload: the route, SENDING and the channel's reference, so a
            # restart resumes this transfer instead of starting another.
            detail = {
                **record.detail, **route_fields.pop("detail", {}),
                "reference": reference, "expects_receipt": ready.expects_receipt,
            }
            self.journal.move(record.row, Phase.SENDING, detail=detail, **route_fields)

        try:
            try:
                reference = channel.send(ready.package, record.detail.get("reference"), remember)
            except RetryableChannelError as exc:
                circuit.failed(exc)
                raise
            except PermanentChannelError:
                circuit.succeeded()  # a refusal is an answer: the channel is up
                raise
            circuit.succeeded()
        except RetryableChannelError as exc:
            self._later(record, str(exc), route_fields, retry_after_of(exc), channel_working=circuit.working())
            return
        except (PermanentChannelError, ValidationError) as exc:
            self._fail(record, [str(exc)], route_fields)
            return
        self._sent(self.journal.get(record.row), reference, ready.claim_folder)

    def _finished_before_a_crash(self, record: MessageRecord) -> bool:
        """A message past its deadline whose upload finished before a crash was sent: record that, never expire it."""
        reference = record.detail.get("reference")
        channel = self.channels.get(record.channel or "")
        if record.phase != Phase.SENDING or not reference or channel is None:
            return False
        circuit = self.circuits[channel.name]
        try:
            circuit.guard()  # the question is a call on the channel too: not while it is paused
            uploaded = channel.already_sent(reference)
        except RetryableChannelError as exc:
            circuit.heed(exc)
            # Cannot tell yet: ask again later rather than expire a sent message. Past the deadline the
            # usual cap would make it due at once, again and again: back off from now instead.
            attempts = record.attempts + (0 if isinstance(exc, ChannelPaused) else 1)
            delay = max(self.retry.delay(max(attempts, 1), exc.retry_after), circuit.seconds_left())
            self.journal.update(record.row, attempts=attempts, next_attempt_at=self.clock.now().timestamp() + delay)
            return True
        except PermanentChannelError:
            return False
        if uploaded:
            claimed = parse_claim_id(record.claim_id or "", self.config.folders.work_area)
            self._sent(record, reference, claimed.folder if claimed else None)
        return uploaded

    def _route(
        self, record: MessageRecord, message_type: str, security_level: int | None, pinned: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[dict, ServiceRecord | None]:
        """Look the receiver up (once per message): the journal fields to record, and the service record.

        The fields are committed with the next step (SENDING, a retry or FEIL), not on their own.
        """
        if record.channel and "service_record" in record.detail:
            cached = record.detail["service_record"]
            if not cached:
                return {}, None
            return {}, ServiceRecord(**{**cached, "document_types": tuple(cached["document_types"])})
        assert record.receiver and record.process
        route, _answer = route_for(self.registry, record.receiver, record.process, message_type, security_level,
                                   record.conversation_id, pinned=pinned, preferences=self.config.routing,
                                   options=options)
        if record.channel and record.detail.get("reference") and route.channel != record.channel:
            # A send on the old channel may have gone through: never start another on a new one.
            raise PermanentChannelError(
                f"the receiver's channel changed from {record.channel} to {route.channel} while a send on "
                f"{record.channel} ({record.detail['reference']}) was under way; it may have arrived: check with "
                "the receiver before sending it again"
            )
        log.info("message %s: %s", record.message_id, route.reason,
                 extra=event_fields(record.message_id, record.drop_name, route.channel))
        service = dataclasses.asdict(route.service_record) if route.service_record else None
        fields = {"channel": route.channel, "route_reason": route.reason, "detail": {"service_record": service}}
        return fields, route.service_record

    def _sent(self, record: MessageRecord, reference: str, claim_folder: Path | None) -> None:
        with self.journal.transaction():
            record = self.journal.move(record.row, Phase.SENT, detail={**record.detail, "reference": reference})
            self.journal.add_event(record.row, Status.SENDT, description=f"handed to {record.channel} ({reference})")
            settle(self.journal, record.row)  # statuses that overtook the send (after a crash) count now
            record = self.journal.get(record.row)
            if record.claim_id:  # its originals are owed to sent/, journaled apart from the message's row
                originals.note_sent(self.journal, record.claim_id, record.message_id, record.drop_name or "drop",
                                    self.clock.now().timestamp())
        log.info("message %s sent on %s", record.message_id, record.channel,
                 extra=event_fields(record.message_id, record.drop_name, record.channel, "SENDT"))
        try:
            self._file_away(record, claim_folder)
        except (OSError, sqlite3.Error) as exc:
            where = DiskFull(self.config.folders.sent, 0).describe() if is_disk_full(exc) else exc
            log.error("message %s was sent, but its originals could not be moved to %s: %s; they stay in %s "
                      "and are moved at the next send pass that finds room", record.message_id,
                      self.config.folders.sent, where, claim_folder)

    def _file_away_left(self) -> None:
        """Originals of sent messages that could not be moved to sent/ before (the journal keeps them): moved now,
        once there is room."""
        folders = self.config.folders
        try:
            # Where nodes share the work, the originals another node's sender is moving now are not moved here too.
            noted_before = None if self.held is None else self.clock.now().timestamp() - LEFT_AFTER_SECONDS
            for left in originals.waiting(self.journal, noted_before=noted_before):
                progress()
                if left.claim_id and originals.file_away(
                    self.journal, left.claim_id, folders.work_area, folders.sent, self.clock.now().timestamp(),
                    folders.group_id,
                ):
                    log.info("message %s: its originals are in %s now", left.message_id, folders.sent)
        except (OSError, sqlite3.Error):
            return  # still no room: the next pass tries again, quietly

    def _file_away(self, record: MessageRecord, claim_folder: Path | None) -> None:
        """The originals go to sent/ (kept for the retention period); the package is no longer needed."""
        if claim_folder is not None and record.claim_id:
            folders = self.config.folders
            originals.file_away(self.journal, record.claim_id, folders.work_area, folders.sent,
                                self.clock.now().timestamp(), folders.group_id)
        shutil.rmtree(self.packages / record.message_id, ignore_errors=True)

    def _hold(self, record: MessageRecord, channel: str, seconds_left: float, route_fields: dict) -> None:
        """The message's channel is paused: it waits for the channel (not an attempt of its own) and goes when the
        channel answers again; until then, a due time past the pause keeps it out of the way."""
        route_fields = dict(route_fields)
        detail = {**record.detail, **route_fields.pop("detail", {})}
        next_at = self.clock.now().timestamp() + max(seconds_left, 1.0) + self.circuits[channel].max_pause
        if record.deadline is not None:
            next_at = min(next_at, record.deadline.timestamp())
        self.journal.update(record.row, next_attempt_at=next_at, detail=detail, **route_fields)
        log.debug("message %s waits for %s, which is paused", record.message_id, channel)

    def _later(
        self, record: MessageRecord, reason: str, route_fields: dict | None = None, retry_after: float | None = None,
        level: int = logging.WARNING, channel_working: bool = False,
    ) -> None:
        route_fields = dict(route_fields or {})
        # Re-read: remember() may have committed the channel's reference meanwhile, and a retry that
        # forgot it would start a second transfer of a message the channel may already hold.
        record = self.journal.get(record.row)
        detail = {**record.detail, **route_fields.pop("detail", {}), "last_error": reason}
        attempts = record.attempts + 1
        delay = self.retry.delay(attempts, retry_after, channel_working)
        next_at = self.clock.now().timestamp() + delay
        if record.deadline is not None and next_at >= record.deadline.timestamp():
            next_at = record.deadline.timestamp()  # the expiry sweep takes it from there
        self.journal.update(record.row, attempts=attempts, next_attempt_at=next_at, detail=detail, **route_fields)
        channel = record.channel or route_fields.get("channel") or "no channel yet"
        self.repeated.log(
            level, f"sending on {channel}: {same_kind(reason)}",
            "message %s on %s: %s; trying again in %.0f s (attempt %d)",
            record.message_id, channel, reason, delay, attempts,
        )

    def _fail(self, record: MessageRecord, problems: list[str], route_fields: dict | None = None) -> None:
        route_fields = {key: value for key, value in (route_fields or {}).items() if key != "detail"}
        try:
            with self.journal.transaction():
                record = self.journal.move(
                    record.row, Phase.FAILED, errors=[*record.errors, *problems], **route_fields
                )
                self.journal.add_event(record.row, Status.FEIL, description=problems[0])
        except JournalError:
            log.info("message %s changed phase before it could be marked failed", record.message_id)
            return
        log.warning("message %s failed: %s", record.message_id, "; ".join(problems),
                    extra=event_fields(record.message_id, record.drop_name, record.channel, "FEIL"))
        self._park(record)

    def _expire(self, record: MessageRecord) -> None:
        reason = "the deadline passed before the message could be sent"
        try:
            with self.journal.transaction():
                record = self.journal.move(record.row, Phase.EXPIRED, errors=[*record.errors, reason])
                self.journal.add_event(record.row, Status.LEVETID_UTLOPT, description=reason)
        except JournalError:
            return
        self._park(record)

    def _park(self, record: MessageRecord) -> None:
        claimed = parse_claim_id(record.claim_id or "", self.config.folders.work_area)
        if claimed is not None and claimed.folder.exists():
            park_claim(record, claimed.folder, claimed.name, self.config.folders.failed, self.clock.now())
        shutil.rmtree(self.packages / record.message_id, ignore_errors=True)


def _folder_bytes(folder: Path) -> int:
    """The bytes of the files in `folder` (a claimed drop), 0 when it cannot be read."""
    try:
        return sum(entry.stat().st_size for entry in folder.rglob("*") if entry.is_file())
    except OSError:
        return 0


def _with_note(reason: str | None, note: str) -> str | None:
    """The route's reason with the channel's words on how it goes, once."""
    if not note or not reason or reason.endswith(note):
        return reason
    return f"{reason}; {note}"


def deadline_failure(last_error: str) -> str:
    """FEIL's words for a message whose sends kept failing until its deadline."""
    return f"the deadline passed while sending kept failing; the last attempt: {last_error}"


def wake_on_accept(event: threading.Event) -> Callable[..., None]:
    """An intake hook that wakes the sender as soon as a drop is accepted."""

    def hook(*_args: object) -> None:
        event.set()

    return hook


__all__ = ["ChannelError", "RetryPolicy", "Sender", "wake_on_accept"]
