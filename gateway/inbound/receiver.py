"""Receive: poll a channel for what waits, download and open each transfer, and hand it on: an answer about
one of our messages to `answers`, a message for the archive system to the inbox writer, what cannot be
accepted to the quarantine; then confirm (or reject) the download.

The channel offers a transfer again until its download is confirmed, and the journal keeps a message from
reaching the inbox twice. Transfer ids are the channel's own opaque strings (see `transfer_ids`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import BinaryIO, TypeVar

from gateway.channels.base import Channel, InboundMessage
from gateway.clock import Clock
from gateway.config import Config
from gateway.delivery.circuit import ChannelCircuit, ChannelPaused
from gateway.diskspace import DiskFull, DiskPause, full_folder, is_disk_full
from gateway.errors import ChannelError, CryptoError, JournalError, MessageFormatError, SecurityError, ValidationError
from gateway.inbound.answers import AnswerReaders, apply_answer
from gateway.inbound.inbox import Inbox
from gateway.inbound.inbox_writer import InboxWriter, OfferedAgain
from gateway.inbound.incoming_rows import IncomingRows
from gateway.inbound.quarantine import QUARANTINE_FOLDER, Quarantine
from gateway.inbound.transfer_ids import file_part, transfer_id_problem
from gateway.journal.claims import FencedOut, gave_way
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsetup import event_fields
from gateway.logsummary import RepeatedErrors, same_kind
from gateway.progress import progress
from gateway.receipts.writer import StatusWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_POLL_SECONDS = 15.0  # then the poll ends (and beats); the next one goes on
RELIST_SECONDS = 1.0  # the least time between two listings within a poll
IN_MEMORY_LIMIT = 4 << 20  # a download up to this size stays in memory; a larger one rolls over to a file
# A transfer taken and journaled is confirmed once a short pause of its channel is over, rather than taken again at
# the next poll (downloaded and opened again, for nothing) because the pause began meanwhile.
CONFIRM_WAIT_SECONDS = 5.0
MIN_FREE_BYTES = 1 << 20  # beyond a package's own needs, before downloading goes on after a full disk


class Receiver:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        statuses: StatusWriter,
        clock: Clock,
        channel: Channel,
        inbox: Inbox,
        workers: int = 4,
        circuit: ChannelCircuit | None = None,
        answers: AnswerReaders | None = None,
    ) -> None:
        self.config = config
        self.workers = workers
        # The channel's pause (the peer asked us to wait): nothing is listed, downloaded or confirmed meanwhile.
        self.circuit = circuit
        self.journal = journal
        self.statuses = statuses
        self.clock = clock
        self.channel = channel
        self.inbox = inbox
        state = config.folders.state
        self.downloads = state / "incoming" / channel.name.lower()
        self.downloads.mkdir(parents=True, exist_ok=True)
        # Which business messages are answers about ours (statuses, receipts): asked of this, never listed here.
        self.answers = answers if answers is not None else AnswerReaders()
        rows = IncomingRows(journal, channel.name)
        self.quarantine = Quarantine(state / QUARANTINE_FOLDER, journal, rows, channel.capabilities.package_suffix)
        self.writer = InboxWriter(config, journal, clock, inbox, rows, self.quarantine,
                                  channel.capabilities.signs_payloads)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"receive-{channel.name.lower()}")
        self._locks = [threading.Lock() for _ in range(64)]  # striped: memory stays flat
        self.repeated = RepeatedErrors(log, noun="transfers")
        self.disk = DiskPause(log, f"downloading from {channel.name}")
        self._sizes: dict[str, int] = {}  # bytes downloaded so far, per transfer being taken
        self._writing: dict[str, Path] = {}  # the folder each transfer being taken writes to now

    # ---- polling -------------------------------------------------------------------------------
    def poll(self) -> int:
        """Take every message the channel has for us, several at a time; returns how many were handled.

        The takes overlap the listing: while a listing brings new transfers, the channel is asked again
        once half of those under way are done (and a second has passed), so what arrived meanwhile
        starts at once instead of after the slowest of the wave; a listing with nothing new lets the
        rest finish and ends the poll. A channel may list only part of what waits (the 100 newest,
        say), so the listing goes on while it brings something new, for up to MAX_POLL_SECONDS. While
        a file system we write to is full, nothing is downloaded (it would only be downloaded again);
        the first poll that finds room goes on by itself.
        """
        self.repeated.flush()
        if not self.room_again():
            return 0
        if self.circuit is not None and self.circuit.seconds_left() > 0:
            log.debug("%s is paused: nothing is received this poll", self.channel.name)
            return 0
        handled = self.retake_released()
        offered: set[str] = set()  # taken, or being taken, in this poll: never twice in one
        running: set[Future[int]] = set()
        ends = time.monotonic() + MAX_POLL_SECONDS
        try:
            while time.monotonic() < ends and not self.disk.stopped:
                listed_at = time.monotonic()
                try:
                    references = self.call(self.channel.list_inbound)
                except ChannelPaused:
                    break
                except ChannelError as exc:
                    # Expected trouble (network, an HTTP status): one line; the next poll asks again.
                    self.repeated.log(
                        logging.WARNING, f"listing on {self.channel.name}: {same_kind(str(exc))}",
                        "listing the messages waiting on %s failed: %s; the next poll tries again",
                        self.channel.name, exc, noun="polls",
                    )
                    break
                fresh = [reference for reference in references if reference not in offered]
                if not fresh:
                    break
                offered.update(fresh)
                running |= {self.pool.submit(self.take_guarded, reference) for reference in fresh}
                handled += self._until_half_done(running, listed_at + RELIST_SECONDS)
        finally:
            while running:  # what is under way finishes in this poll, each one a sign of life
                done, running = wait(running, return_when=FIRST_COMPLETED)
                progress()
                handled += sum(future.result() for future in done)
            self.statuses.flush_soon()
        return handled

    def paused(self) -> bool:
        if self.circuit is not None and self.circuit.seconds_left() > 0:
            log.debug("%s is paused: nothing is received this poll", self.channel.name)
            return True
        return False

    @staticmethod
    def _until_half_done(running: set[Future[int]], not_before: float) -> int:
        """Wait until at most half of `running` is left, or none, and `not_before` has passed (removing
        what finished from `running`); returns how many were taken."""
        left = len(running) // 2
        taken = 0
        while running:
            wait_s = not_before - time.monotonic()
            if len(running) <= left and wait_s <= 0:
                break
            done, _pending = wait(running, timeout=wait_s if len(running) <= left else None,
                                  return_when=FIRST_COMPLETED)
            running -= done
            progress()
            taken += sum(future.result() for future in done)
        time.sleep(max(0.0, not_before - time.monotonic()))  # all done early: still once a second at most
        return taken

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def room_again(self) -> bool:
        """Whether downloading may go on; on the way back from a full disk, the journal's log is cut too."""
        was_stopped = self.disk.stopped
        if not self.disk.may_go():
            return False
        if was_stopped:
            with contextlib.suppress(sqlite3.Error, JournalError):
                self.journal.checkpoint()  # what the write-ahead log held is free again too
        return True

    # ---- released by an operator (efm-gateway release) ----------------------------------------------
    def retake_released(self) -> int:
        """Open again the kept package of each quarantined message an operator released; returns how many."""
        taken = 0
        for record in self.journal.released(self.channel.name):
            try:
                self._retake(record)
                taken += 1
            except (CryptoError, ValidationError, JournalError, OSError) as exc:
                self.quarantine.again(record, f"opening it again failed: {exc}")
            except Exception as exc:
                # Back to quarantine rather than opened again at every poll.
                log.exception("released message %s failed unexpectedly", record.message_id)
                self.quarantine.again(record, f"opening it again failed unexpectedly: {exc}")
        return taken

    def _retake(self, record: MessageRecord) -> None:
        released = record.detail["released"]
        kept = self.quarantine.folder / released["kept"]
        reference = released["reference"]
        problem = transfer_id_problem(reference)
        if problem is not None:  # read back from a file name in quarantine/: never a path, never empty
            self.quarantine.again(record, f"its transfer id {reference[:80]!r} cannot be taken: {problem}")
            return
        work = self.downloads / file_part(reference)
        shutil.rmtree(work, ignore_errors=True)
        try:
            with open(kept, "rb") as package:
                try:
                    inbound = self.channel.open_inbound(reference, package, work)
                except (MessageFormatError, SecurityError) as exc:
                    self.quarantine.again(record, str(exc))
                    return
                rejected = self._dispatch(reference, inbound, package)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if rejected is None:
            kept.unlink(missing_ok=True)  # in the inbox now: the archive system has the message
            log.info("released message %s was opened again and delivered", record.message_id,
                     extra=event_fields(record.message_id, channel=self.channel.name, status="INNKOMMENDE_MOTTATT"))

    def take_guarded(self, reference: str) -> int:
        """take(), with every expected failure one line naming the transfer and what happens next; a traceback
        only for what must be a bug."""
        if self.disk.stopped:
            return 0  # another worker found the disk full: the rest wait, not download to fail
        try:
            return 1 if self.take(reference) else 0
        except ChannelPaused:
            log.debug("incoming transfer %s on %s waits: the channel is paused", reference, self.channel.name)
        except ChannelError as exc:
            self.repeated.log(
                logging.WARNING, f"transfer on {self.channel.name}: {same_kind(str(exc))}",
                "incoming transfer %s on %s: %s; it will be offered again at the next poll",
                reference, self.channel.name, exc,
            )
        except OfferedAgain:
            pass  # said where it happened; the channel offers it again
        except FencedOut:
            pass  # another node took this transfer over (said in one line by the claim's check)
        except (OSError, sqlite3.OperationalError, JournalError) as exc:
            if is_disk_full(exc):
                self._stop_for_full_disk(reference, exc)
            elif isinstance(exc, OSError):
                self.repeated.log(
                    logging.ERROR, f"transfer on {self.channel.name}: {same_kind(str(exc))}",
                    "incoming transfer %s on %s could not be written: %s; it will be offered again at the next poll",
                    reference, self.channel.name, exc,
                )
            elif gave_way(exc):  # another node's step held the message: no circle of waits, a later turn
                log.info("incoming transfer %s waits: another node is changing its message (%s); it is taken again "
                         "at a later turn", reference, exc)
            else:
                log.exception("incoming transfer %s could not be journaled (%s); it will be offered again",
                              reference, exc)
        except (CryptoError, ValidationError) as exc:
            log.error("incoming transfer %s on %s could not be read (%s); it will be offered again",
                      reference, self.channel.name, exc)
        except Exception:
            # A poisoned message must not stop the others; the channel offers it again later.
            log.exception("incoming transfer %s failed unexpectedly; it will be offered again", reference)
        finally:
            self._sizes.pop(reference, None)
            self._writing.pop(reference, None)
            self.statuses.flush_soon()  # its status file follows at once, not at the end of the poll
        return 0

    def _stop_for_full_disk(self, reference: str, exc: BaseException) -> None:
        """One line for the operator; downloading stops until there is room (poll() checks)."""
        folders = [self.downloads, self.config.folders.inbox_staging, self.quarantine.folder, self.config.folders.state]
        if isinstance(exc, sqlite3.Error | JournalError):
            folder = self.config.folders.state  # the journal's
        elif getattr(exc, "filename", None) or reference not in self._writing:
            folder = full_folder(exc, folders)
        else:
            folder = self._writing[reference]
        # Room for the package and its documents beside it, and a margin for the journal.
        full = DiskFull(folder, max(2 * self._sizes.get(reference, 0), IN_MEMORY_LIMIT) + MIN_FREE_BYTES)
        if self.disk.stop(full):
            log.error(
                "incoming transfer %s on %s could not be stored: %s (%s); downloading stops until there is room, "
                "then goes on by itself", reference, self.channel.name, full.describe(), exc,
            )

    def call(self, call: Callable[..., T], *args: object) -> T:
        """A call on the channel, unless it is paused (ChannelPaused); an answer asking us to wait pauses it."""
        if self.circuit is None:
            return call(*args)
        self.circuit.guard()
        try:
            return call(*args)
        except ChannelError as exc:
            self.circuit.heed(exc)
            raise

    def _finish(self, call: Callable[..., T], *args: object) -> T:
        """A call that ends a transfer already handled here (its confirmation or rejection): a pause of the channel
        that ends within CONFIRM_WAIT_SECONDS is waited out first. Under faults the channel pauses often (a 429 to
        any call pauses it for all); a confirmation given up for a second's pause had the transfer downloaded, opened
        and applied again at every poll, dozens of times."""
        waiting_ends = time.monotonic() + CONFIRM_WAIT_SECONDS
        while self.circuit is not None:
            left = self.circuit.seconds_left()
            if left <= 0 or time.monotonic() + left > waiting_ends:
                break
            time.sleep(min(left, 1.0) + 0.01)
            progress()
        return self.call(call, *args)

    def _message_lock(self, message_id: str) -> threading.Lock:
        """Two transfers of one message (a resend) are handled one after the other, never side by side."""
        return self._locks[hash(message_id) % len(self._locks)]

    def take(self, reference: str) -> bool:
        """Handle one transfer; False (and nothing touched) when its id cannot be taken (see `transfer_ids`)."""
        problem = transfer_id_problem(reference)
        if problem is not None:
            log.warning("the channel offered a transfer with a malformed id %r (%s); ignored", reference[:80], problem)
            return False
        work = self.downloads / file_part(reference)  # only a large message needs files here; escaped, never '..'
        self._writing[reference] = self.downloads  # where a full disk would be: said in the log line
        shutil.rmtree(work, ignore_errors=True)
        try:
            # A small package stays in memory; a large one rolls over to an unnamed file.
            with tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_LIMIT, dir=self.downloads) as download:
                try:
                    self.call(self.channel.fetch_inbound, reference, download)
                except SecurityError as exc:
                    # Larger than the channel carries: offered again, it would be downloaded again forever.
                    self.quarantine.unreadable(reference, None, str(exc))
                    self._finish(self.channel.reject_inbound, reference, str(exc))
                    return True
                finally:
                    self._sizes[reference] = download.tell()  # what a full disk must find room for
                download.seek(0)
                try:
                    inbound = self.call(self.channel.open_inbound, reference, download, work)
                except (MessageFormatError, SecurityError) as exc:
                    self.quarantine.unreadable(reference, download, str(exc))
                    self._finish(self.channel.reject_inbound, reference, str(exc))
                    return True
                self._writing[reference] = self.config.folders.inbox_staging
                rejected = self._dispatch(reference, inbound, download)
            # Paused meanwhile: not confirmed now. The channel offers it again, and the journal keeps it
            # from reaching the inbox twice.
            if rejected:
                self._finish(self.channel.reject_inbound, reference, rejected)
            else:
                self._finish(self.channel.acknowledge_inbound, reference)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return True

    def _dispatch(self, reference: str, inbound: InboundMessage, download: BinaryIO) -> str | None:
        """Apply or deliver one opened message; the reason when it was quarantined, else None."""
        # Ids are compared and used as folder names in lower case, as ours are written.
        sbd = dataclasses.replace(
            inbound.sbd,
            message_id=inbound.sbd.message_id.lower(),
            conversation_id=inbound.sbd.conversation_id.lower(),
        )
        inbound = dataclasses.replace(inbound, sbd=sbd)
        if sbd.receiver != self.config.organisation.orgnr:
            reason = f"the message is addressed to {sbd.receiver}, not to us"
            self.quarantine.message(sbd, reference, download, reason)
            return reason
        answer = self.answers.read(sbd)  # a status or receipt about one of our messages, else None
        transport = inbound.transport_sender
        if inbound.sender_unverified:
            # Nobody vouches for the sender: delivered with words saying so, never applied to a message of ours.
            if answer is not None:
                log.warning("a %s naming message %s was dropped, not applied: %s", sbd.message_type,
                            sbd.message_id, inbound.sender_unverified)
                return None
        elif transport != sbd.sender:
            reason = (
                f"{self.channel.name} says {transport} sent it, but its SBD names {sbd.sender} as the sender"
                if transport else f"{self.channel.name} did not say who sent it, so its SBD's sender "
                f"{sbd.sender} cannot be checked against the transport"
            )
            if answer is not None:
                log.warning("a %s naming message %s was dropped, not applied: %s",
                            sbd.message_type, sbd.message_id, reason)
                return None
            self.quarantine.message(sbd, reference, download, reason)
            return reason
        with self._message_lock(sbd.message_id):
            if answer is not None:
                apply_answer(self.journal, self.channel.name, sbd, answer)
                return None
            return self.writer.deliver(reference, inbound, download)
