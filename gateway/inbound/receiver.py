"""Receive: download, verify, unpack into the inbox; apply statuses and receipts to our messages.

For a message: journal RECEIVED (committed) → rename the assembled folder into the inbox →
journal IN_INBOX with INNKOMMENDE_MOTTATT and a MOTTATT owed to the sender → confirm the download.
A crash anywhere repeats the steps not yet journaled; the channel offers the message again until
its download is confirmed, and the journal keeps it from reaching the inbox twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
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
from gateway.clock import Clock, isoformat
from gateway.config import Config
from gateway.contract.statuses import Status
from gateway.delivery.circuit import ChannelCircuit, ChannelPaused
from gateway.diskspace import DiskFull, DiskPause, full_folder, is_disk_full
from gateway.errors import ChannelError, CryptoError, JournalError, MessageFormatError, SecurityError, ValidationError
from gateway.formats.asice import AsicContents
from gateway.formats.business import ArkivmeldingKvittering
from gateway.formats.business import Status as StatusMessage
from gateway.formats.keys import orgnr_of
from gateway.formats.sbd import StandardBusinessDocument
from gateway.fsio import PRIVATE_FILE_MODE, TAKEN_FOLDER_MODE, atomic_write_bytes, atomic_writer, fsync_dir, share_tree
from gateway.inbound.inbox import Inbox, sync_tree
from gateway.inbound.message_xml import write_message_xml
from gateway.journal import transfer_failures
from gateway.journal.completion import record_status
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsetup import event_fields
from gateway.logsummary import RepeatedErrors, same_kind
from gateway.receipts.writer import StatusWriter, status_file_name

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSFER_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
RECEIPT_OK = ("OK", "WARNING")
MAX_POLL_SECONDS = 15.0  # then the poll ends (and beats); the next one goes on
RELIST_SECONDS = 1.0  # the least time between two listings within a poll
MAX_WRITE_FAILURES = 3  # tries at writing a message's documents before it is quarantined
IN_MEMORY_LIMIT = 4 << 20  # a download up to this size stays in memory; a larger one rolls over to a file
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
    ) -> None:
        self.config = config
        # The channel's pause (the peer asked us to wait): nothing is listed, downloaded or confirmed meanwhile.
        self.circuit = circuit
        self.journal = journal
        self.statuses = statuses
        self.clock = clock
        self.channel = channel
        self.inbox = inbox
        state = config.folders.state
        self.downloads = state / "incoming" / channel.name.lower()
        self.quarantine = state / "quarantine"
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.quarantine.mkdir(exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"receive-{channel.name.lower()}")
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
        if not self._room_again():
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
                    references = self._call(self.channel.list_inbound)
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
                running |= {self._pool.submit(self._take_guarded, reference) for reference in fresh}
                handled += self._until_half_done(running, listed_at + RELIST_SECONDS)
        finally:
            wait(running)  # what is under way finishes in this poll
            handled += sum(future.result() for future in running)
            self.statuses.flush_soon()
        return handled

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
            taken += sum(future.result() for future in done)
        time.sleep(max(0.0, not_before - time.monotonic()))  # all done early: still once a second at most
        return taken

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _room_again(self) -> bool:
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
                self._quarantine_again(record, f"opening it again failed: {exc}")
            except Exception as exc:
                # Back to quarantine rather than opened again at every poll.
                log.exception("released message %s failed unexpectedly", record.message_id)
                self._quarantine_again(record, f"opening it again failed unexpectedly: {exc}")
        return taken

    def _retake(self, record: MessageRecord) -> None:
        released = record.detail["released"]
        kept = self.quarantine / released["kept"]
        reference = released["reference"]
        work = self.downloads / reference
        shutil.rmtree(work, ignore_errors=True)
        try:
            with open(kept, "rb") as package:
                try:
                    inbound = self.channel.open_inbound(reference, package, work)
                except (MessageFormatError, SecurityError) as exc:
                    self._quarantine_again(record, str(exc))
                    return
                rejected = self._dispatch(reference, inbound, package)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if rejected is None:
            kept.unlink(missing_ok=True)  # in the inbox now: the archive system has the message
            log.info("released message %s was opened again and delivered", record.message_id,
                     extra=event_fields(record.message_id, channel=self.channel.name, status="INNKOMMENDE_MOTTATT"))

    def _quarantine_again(self, record: MessageRecord, reason: str) -> None:
        with self.journal.transaction():
            current = self.journal.get(record.row)
            if current.phase != Phase.RECEIVED:
                return
            self.journal.move(record.row, Phase.QUARANTINED, errors=[reason])
            self.journal.add_event(record.row, Status.FEIL, description=f"quarantined: {reason}")
        log.warning("released message %s quarantined again: %s", record.message_id, reason,
                    extra=event_fields(record.message_id, channel=self.channel.name, status="FEIL"))

    def _take_guarded(self, reference: str) -> int:
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
        except _OfferedAgain:
            pass  # said where it happened; the channel offers it again
        except (OSError, sqlite3.OperationalError, JournalError) as exc:
            if is_disk_full(exc):
                self._stop_for_full_disk(reference, exc)
            elif isinstance(exc, OSError):
                self.repeated.log(
                    logging.ERROR, f"transfer on {self.channel.name}: {same_kind(str(exc))}",
                    "incoming transfer %s on %s could not be written: %s; it will be offered again at the next poll",
                    reference, self.channel.name, exc,
                )
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
        folders = [self.downloads, self.config.folders.inbox_staging, self.quarantine, self.config.folders.state]
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

    def _call(self, call: Callable[..., T], *args: object) -> T:
        """A call on the channel, unless it is paused (ChannelPaused); an answer asking us to wait pauses it."""
        if self.circuit is None:
            return call(*args)
        self.circuit.guard()
        try:
            return call(*args)
        except ChannelError as exc:
            self.circuit.heed(exc)
            raise

    def _message_lock(self, message_id: str) -> threading.Lock:
        """Two transfers of one message (a resend) are handled one after the other, never side by side."""
        return self._locks[hash(message_id) % len(self._locks)]

    def take(self, reference: str) -> bool:
        """Handle one transfer; False (and nothing touched) when its id is not a UUID."""
        if not _TRANSFER_ID.fullmatch(reference):
            # It becomes a folder name and part of a URL: '..' would point at the state folder.
            log.warning("the channel offered a transfer with a malformed id %r; ignored", reference[:80])
            return False
        work = self.downloads / reference  # only a large message needs files here
        self._writing[reference] = self.downloads  # where a full disk would be: said in the log line
        shutil.rmtree(work, ignore_errors=True)
        try:
            # A small package stays in memory; a large one rolls over to an unnamed file.
            with tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_LIMIT, dir=self.downloads) as download:
                try:
                    self._call(self.channel.fetch_inbound, reference, download)
                except SecurityError as exc:
                    # Larger than the channel carries: offered again, it would be downloaded again forever.
                    self._quarantine_unreadable(reference, None, str(exc))
                    self._call(self.channel.reject_inbound, reference, str(exc))
                    return True
                finally:
                    self._sizes[reference] = download.tell()  # what a full disk must find room for
                download.seek(0)
                try:
                    inbound = self._call(self.channel.open_inbound, reference, download, work)
                except (MessageFormatError, SecurityError) as exc:
                    self._quarantine_unreadable(reference, download, str(exc))
                    self._call(self.channel.reject_inbound, reference, str(exc))
                    return True
                self._writing[reference] = self.config.folders.inbox_staging
                rejected = self._dispatch(reference, inbound, download)
            # Paused meanwhile: not confirmed now. The channel offers it again, and the journal keeps it
            # from reaching the inbox twice.
            if rejected:
                self._call(self.channel.reject_inbound, reference, rejected)
            else:
                self._call(self.channel.acknowledge_inbound, reference)
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
            self._quarantine(sbd, reference, download, reason)
            return reason
        business = sbd.business_message
        about_ours = isinstance(business, StatusMessage | ArkivmeldingKvittering)
        transport = inbound.transport_sender
        if transport != sbd.sender:
            reason = (
                f"{self.channel.name} says {transport} sent it, but its SBD names {sbd.sender} as the sender"
                if transport else f"{self.channel.name} did not say who sent it, so its SBD's sender "
                f"{sbd.sender} cannot be checked against the transport"
            )
            if about_ours:
                log.warning("a %s naming message %s was dropped, not applied: %s",
                            sbd.message_type, sbd.message_id, reason)
                return None
            self._quarantine(sbd, reference, download, reason)
            return reason
        with self._message_lock(sbd.message_id):
            if isinstance(business, StatusMessage):
                self._apply_status(sbd, business)
            elif isinstance(business, ArkivmeldingKvittering):
                self._apply_receipt(sbd, business)
            else:
                return self._deliver(reference, inbound, download)
        return None

    # ---- statuses and receipts for our own messages -----------------------------------------------
    def _apply_status(self, sbd: StandardBusinessDocument, business: StatusMessage) -> None:
        status = Status.MOTTATT if business.status == "MOTTATT" else Status.LEVERT
        record = self.journal.find_live("out", sbd.message_id)
        if record is None:
            log.info("status %s for unknown message %s ignored", business.status, sbd.message_id)
            return
        if not self._from_its_receiver(record, sbd, f"status {business.status}"):
            return
        # The event and what it finishes, in one step, stamped with the time the receiver sent it.
        record_status(self.journal, record.row, status, sbd.created, f"{status.value.lower()} by {sbd.sender}")
        log.info("message %s: %s from %s", sbd.message_id, status.value, sbd.sender,
                 extra=event_fields(sbd.message_id, record.drop_name, self.channel.name, status.value))

    def _apply_receipt(self, sbd: StandardBusinessDocument, receipt: ArkivmeldingKvittering) -> None:
        related = (receipt.related_to_message_id or "").lower()
        texts = [m.text for m in receipt.messages if m.text]
        record = self.journal.find_live("out", related)
        if record is None:
            log.info("receipt %s for unknown message %s ignored", sbd.message_id, related)
            return
        if not self._from_its_receiver(record, sbd, f"arkivmelding_kvittering {receipt.receipt_type}"):
            return
        if receipt.receipt_type in RECEIPT_OK:
            description = f"arkivmelding_kvittering {receipt.receipt_type} from {sbd.sender}"
            record_status(self.journal, record.row, Status.LEST, sbd.created, description)
        else:
            problems = [f"the receiver answered {receipt.receipt_type}", *texts]
            record_status(self.journal, record.row, Status.FEIL, sbd.created, "; ".join(problems), errors=problems)
        log.info("message %s: receipt %s from %s", related, receipt.receipt_type, sbd.sender,
                 extra=event_fields(related, record.drop_name, self.channel.name))

    def _from_its_receiver(self, record: MessageRecord, sbd: StandardBusinessDocument, what: str) -> bool:
        """A status or receipt counts only from the organisation our message went to."""
        if record.receiver == sbd.sender:
            return True
        log.warning(
            "%s for message %s came from %s, but that message went to %s: a forgery or a mistake; dropped, "
            "not applied", what, record.message_id, sbd.sender, record.receiver,
        )
        return False

    # ---- messages for the archive system ---------------------------------------------------------
    def _deliver(self, reference: str, inbound: InboundMessage, download: BinaryIO) -> str | None:
        sbd = inbound.sbd
        existing = self.journal.find_live("in", sbd.message_id)
        # A copy sent again after the first one was quarantined: it gets its own chance.
        again = existing is not None and _another_copy(existing, reference)
        if existing is not None and existing.phase != Phase.RECEIVED and not again:
            self.inbox.hand_over(existing)  # finishes a hand-over a crash cut off; nothing when it is done
            log.info("message %s already received (%s); duplicate ignored", sbd.message_id, existing.phase)
            return None
        now = self.clock.now()
        fresh = existing is None or again
        if fresh and sbd.expected_response is not None and sbd.expected_response <= now:
            with self.journal.transaction():
                if existing is not None:
                    record = self.journal.move(self._reopen(existing, reference).row, Phase.EXPIRED,
                                               errors=["the message arrived after its deadline"])
                else:
                    record = self._create(sbd, Phase.EXPIRED, errors=["the message arrived after its deadline"])
                self.journal.add_event(record.row, Status.LEVETID_UTLOPT, description="arrived after its deadline")
            log.info("message %s from %s arrived after its deadline; discarded", sbd.message_id, sbd.sender)
            return None
        folder_name = sbd.message_id
        staging = self.config.folders.inbox_staging / folder_name
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            if inbound.extract is None:
                raise MessageFormatError("the message carries no documents")
            # Durable: once the folder is renamed into the inbox, a power cut must not leave a torn document.
            contents = inbound.extract(staging, True)
            signed_by = self._signer_for(sbd, contents)
            write_message_xml(sbd, contents, staging, self.clock.now(), signed_by)
        except (SecurityError, CryptoError, MessageFormatError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            self._quarantine(sbd, reference, download, str(exc), existing)
            return str(exc)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)  # a full disk: no half-written folder holds the space
            if is_disk_full(exc):
                raise
            # Its own folder could be made, its documents not: what it holds may be what fails (a path too long
            # for the file system, say). Tried a few times, then quarantined, never downloaded for ever.
            failures = transfer_failures.count(self.journal, self.channel.name, reference, str(exc),
                                               now.timestamp())
            if failures < MAX_WRITE_FAILURES:
                log.warning("message %s from %s: its documents could not be written to %s (%s); try %d of %d, then "
                            "it is quarantined", sbd.message_id, sbd.sender, self.config.folders.inbox_staging, exc,
                            failures, MAX_WRITE_FAILURES)
                raise _OfferedAgain from exc
            reason = (f"its documents could not be written to {self.config.folders.inbox_staging} "
                      f"({failures} tries; the last: {exc})")
            self._quarantine(sbd, reference, download, reason, existing)
            return reason
        # Readable by the archive system's group alone, and its folders removable by it, whatever our umask.
        share_tree(staging, self.config.folders.group_id, TAKEN_FOLDER_MODE)
        sync_tree(staging)
        # Synced before the journal says IN_INBOX: after a power cut the folder is in staging (and
        # recover() hands it over), never missing from both places and so taken for a pick-up.
        fsync_dir(self.config.folders.inbox_staging)
        # The journal says "in the inbox" before the folder appears there: once the archive system
        # may have seen (and taken) the folder, a restart must never hand the message over again.
        with self.journal.transaction():
            if existing is None:
                existing = self._create(
                    sbd, Phase.RECEIVED, detail={"inbox_folder": folder_name, "reference": reference}
                )
            elif again:
                existing = self._reopen(existing, reference, inbox_folder=folder_name)
            record = self.journal.move(existing.row, Phase.IN_INBOX)
            signed = f"; signed by {signed_by} for {sbd.sender}" if signed_by else ""
            # What the signer's trust check accepted with a reservation (trust.revocation warn).
            signed += "".join(f"; {warning}" for warning in contents.trust_warnings)
            self.journal.add_event(
                record.row, Status.INNKOMMENDE_MOTTATT, description=f"in the inbox as {folder_name}{signed}"
            )
            self.journal.queue_status_send(record.row, Status.MOTTATT)
            transfer_failures.forget(self.journal, self.channel.name, reference)
        self.inbox.hand_over(record)
        log.info("message %s from %s is in the inbox", sbd.message_id, sbd.sender,
                 extra=event_fields(sbd.message_id, None, self.channel.name, "INNKOMMENDE_MOTTATT"))
        return None

    def _reopen(self, quarantined: MessageRecord, reference: str, **detail: object) -> MessageRecord:
        """Inside a step: a quarantined message back to RECEIVED for its new copy (transfer `reference`). The
        first copy's FEIL stays in its history (as ANNET, with its words), its package in quarantine/."""
        self.journal.retire_failure(quarantined.row, f"the sender sent it again (transfer {reference})")
        kept = {key: value for key, value in quarantined.detail.items() if key != "released"}
        kept["previous_errors"] = [*kept.get("previous_errors", []), *quarantined.errors]
        return self.journal.move(quarantined.row, Phase.RECEIVED, errors=[],
                                 detail={**kept, **detail, "reference": reference})

    def _create(self, sbd: StandardBusinessDocument, phase: Phase, **fields: object) -> MessageRecord:
        # When the sender made it: the start of the receive latency the metrics report.
        given = fields.pop("detail", None) or {}
        detail = {"sent_at": isoformat(sbd.created), **given}  # type: ignore[dict-item]
        return self.journal.create(
            direction="in",
            message_id=sbd.message_id,
            status_name=status_file_name(None, sbd.message_id, "in"),
            phase=phase,
            deadline=sbd.expected_response,
            conversation_id=sbd.conversation_id,
            sender=sbd.sender,
            receiver=sbd.receiver,
            message_type=sbd.message_type,
            process=sbd.process,
            channel=self.channel.name,
            detail=detail,
            **fields,
        )

    def _signer_for(self, sbd: StandardBusinessDocument, contents: AsicContents) -> str | None:
        """The organisation that signed for the sender where config allows one to; SecurityError for any
        other signer than the sender itself."""
        if contents.signer is None:
            if self.channel.capabilities.signs_payloads:
                raise SecurityError(f"the message carries no signature, which {self.channel.name} messages must")
            return None  # the transport's sender, checked against the SBD's, is all this channel vouches for
        signer = orgnr_of(contents.signer)
        if signer == sbd.sender:
            return None
        if signer is not None and sbd.sender in self.config.trust.signing_services.get(signer, ()):
            return signer
        raise SecurityError(
            f"the message is signed by {signer or 'a certificate without an organisation number'} "
            f"(its certificate's serialNumber or organizationIdentifier), but its SBD names {sbd.sender} as the "
            f"sender; if {signer} is a service that signs for {sbd.sender}, list it under trust.signing_services"
        )

    def _quarantine(
        self,
        sbd: StandardBusinessDocument,
        reference: str,
        download: BinaryIO,
        reason: str,
        existing: MessageRecord | None = None,
    ) -> None:
        """Keep the raw package for an operator, with a FEIL status; the next message goes on."""
        kept = self.quarantine / f"{sbd.message_id}.{reference}.zip"
        _keep(download, kept)  # beside the packages of earlier copies: each transfer its own
        with self.journal.transaction():
            if existing is None:
                existing = self.journal.find_live("in", sbd.message_id)
            if existing is None:
                existing = self._create(sbd, Phase.QUARANTINED, errors=[reason],
                                        detail={"kept": kept.name, "reference": reference})
            elif _another_copy(existing, reference):
                # A new copy, bad as well: both quarantines stay in view (the first as ANNET).
                existing = self._reopen(existing, reference, kept=kept.name)
                self.journal.move(existing.row, Phase.QUARANTINED, errors=[reason])
            elif existing.phase == Phase.RECEIVED:
                self.journal.move(existing.row, Phase.QUARANTINED, errors=[reason])
            self.journal.add_event(existing.row, Status.FEIL, description=f"quarantined: {reason}")
            transfer_failures.forget(self.journal, self.channel.name, reference)
        log.warning("message %s from %s quarantined: %s", sbd.message_id, sbd.sender, reason,
                    extra=event_fields(sbd.message_id, None, self.channel.name, "FEIL"))

    def _quarantine_unreadable(self, reference: str, download: BinaryIO | None, reason: str) -> None:
        kept = self.quarantine / f"unreadable.{reference}.zip"
        if download is not None:
            _keep(download, kept)
        atomic_write_bytes(kept.with_suffix(".error.txt"), f"{reason}\n".encode(), PRIVATE_FILE_MODE)
        log.warning("incoming transfer %s quarantined: %s", reference, reason)


class _OfferedAgain(OSError):
    """The transfer is left for the next poll (not confirmed), its trouble logged already. An OSError: a released
    message that meets it goes back to quarantine with its words."""


def _another_copy(record: MessageRecord, reference: str) -> bool:
    """Whether transfer `reference` is a new copy of the quarantined message `record` (not the same transfer
    offered again because its rejection did not get through)."""
    if record.phase != Phase.QUARANTINED:
        return False
    kept = record.detail.get("kept") or ""
    return record.detail.get("reference", kept.removeprefix(f"{record.message_id}.").removesuffix(".zip")) != reference


def _keep(download: BinaryIO, kept: Path) -> None:
    """A copy of the downloaded package, whole or not at all."""
    download.seek(0)
    with atomic_writer(kept, PRIVATE_FILE_MODE) as target:  # a received message: the gateway's eyes only
        shutil.copyfileobj(download, target, 1 << 20)
