"""The inbox writer: a received message for the archive system, verified and unpacked into the staging area,
then handed over to the inbox.

Journal RECEIVED (committed) → rename the assembled folder into the inbox → journal IN_INBOX with
INNKOMMENDE_MOTTATT and a MOTTATT owed to the sender. A crash anywhere repeats the steps not yet journaled;
the journal keeps a message from reaching the inbox twice.
"""

from __future__ import annotations

import logging
import shutil
from typing import BinaryIO

from gateway.channels.base import InboundMessage
from gateway.clock import Clock
from gateway.config import Config
from gateway.contract.statuses import Status
from gateway.diskspace import is_disk_full
from gateway.errors import CryptoError, MessageFormatError, SecurityError
from gateway.formats.asice import AsicContents
from gateway.formats.keys import orgnr_of
from gateway.formats.sbd import StandardBusinessDocument
from gateway.fsio import TAKEN_FOLDER_MODE, fsync_dir, share_tree
from gateway.inbound.inbox import Inbox, sync_tree
from gateway.inbound.incoming_rows import IncomingRows
from gateway.inbound.message_xml import write_message_xml
from gateway.inbound.quarantine import Quarantine, another_copy
from gateway.journal import transfer_failures
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.logsetup import event_fields

log = logging.getLogger(__name__)

MAX_WRITE_FAILURES = 3  # tries at writing a message's documents before it is quarantined


class OfferedAgain(OSError):
    """The transfer is left for the next poll (not confirmed), its trouble logged already. An OSError: a released
    message that meets it goes back to quarantine with its words."""


class InboxWriter:
    """Delivers the messages of one channel to the inbox."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        clock: Clock,
        inbox: Inbox,
        rows: IncomingRows,
        quarantine: Quarantine,
        signs_payloads: bool,
    ) -> None:
        self.config = config
        self.journal = journal
        self.clock = clock
        self.inbox = inbox
        self.rows = rows
        self.quarantine = quarantine
        self.channel_name = rows.channel_name
        self.signs_payloads = signs_payloads

    def deliver(self, reference: str, inbound: InboundMessage, download: BinaryIO) -> str | None:
        """Write one message into the inbox; the reason when it was quarantined instead, else None."""
        sbd = inbound.sbd
        existing = self.journal.find_live("in", sbd.message_id)
        # A copy sent again after the first one was quarantined: it gets its own chance.
        again = existing is not None and another_copy(existing, reference)
        if existing is not None and existing.phase != Phase.RECEIVED and not again:
            self.inbox.hand_over(existing)  # finishes a hand-over a crash cut off; nothing when it is done
            log.info("message %s already received (%s); duplicate ignored", sbd.message_id, existing.phase)
            return None
        now = self.clock.now()
        fresh = existing is None or again
        if fresh and sbd.expected_response is not None and sbd.expected_response <= now:
            with self.journal.transaction():
                if existing is not None:
                    record = self.journal.move(self.rows.reopen(existing, reference).row, Phase.EXPIRED,
                                               errors=["the message arrived after its deadline"])
                else:
                    record = self.rows.create(sbd, Phase.EXPIRED, errors=["the message arrived after its deadline"])
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
            write_message_xml(sbd, contents, staging, self.clock.now(), signed_by, inbound.sender_unverified)
        except (SecurityError, CryptoError, MessageFormatError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            self.quarantine.message(sbd, reference, download, str(exc), existing)
            return str(exc)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)  # a full disk: no half-written folder holds the space
            if is_disk_full(exc):
                raise
            # Its own folder could be made, its documents not: what it holds may be what fails (a path too long
            # for the file system, say). Tried a few times, then quarantined, never downloaded for ever.
            failures = transfer_failures.count(self.journal, self.channel_name, reference, str(exc),
                                               now.timestamp())
            if failures < MAX_WRITE_FAILURES:
                log.warning("message %s from %s: its documents could not be written to %s (%s); try %d of %d, then "
                            "it is quarantined", sbd.message_id, sbd.sender, self.config.folders.inbox_staging, exc,
                            failures, MAX_WRITE_FAILURES)
                raise OfferedAgain from exc
            reason = (f"its documents could not be written to {self.config.folders.inbox_staging} "
                      f"({failures} tries; the last: {exc})")
            self.quarantine.message(sbd, reference, download, reason, existing)
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
                existing = self.rows.create(
                    sbd, Phase.RECEIVED, detail={"inbox_folder": folder_name, "reference": reference}
                )
            elif again:
                existing = self.rows.reopen(existing, reference, inbox_folder=folder_name)
            record = self.journal.move(existing.row, Phase.IN_INBOX)
            signed = f"; signed by {signed_by} for {sbd.sender}" if signed_by else ""
            # What the signer's trust check accepted with a reservation (trust.revocation warn).
            signed += "".join(f"; {warning}" for warning in contents.trust_warnings)
            if inbound.sender_unverified:
                signed += f"; not verified: {inbound.sender_unverified}"
            self.journal.add_event(
                record.row, Status.INNKOMMENDE_MOTTATT, description=f"in the inbox as {folder_name}{signed}"
            )
            self.journal.queue_status_send(record.row, Status.MOTTATT)
            transfer_failures.forget(self.journal, self.channel_name, reference)
        self.inbox.hand_over(record)
        log.info("message %s from %s is in the inbox", sbd.message_id, sbd.sender,
                 extra=event_fields(sbd.message_id, None, self.channel_name, "INNKOMMENDE_MOTTATT"))
        return None

    def _signer_for(self, sbd: StandardBusinessDocument, contents: AsicContents) -> str | None:
        """The organisation that signed for the sender where config allows one to; SecurityError for any
        other signer than the sender itself."""
        if contents.signer is None:
            if self.signs_payloads:
                raise SecurityError(f"the message carries no signature, which {self.channel_name} messages must")
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


__all__ = ["MAX_WRITE_FAILURES", "InboxWriter", "OfferedAgain"]
