"""Intake: scan, claim, validate, journal, status file; rejected drops to failed/.

Order for every drop: claim (rename) → journal commit → visible side effects (status file, move to
failed/). After a crash, `recover()` finds each claim in the work area and finishes it from its
journal row, or journals it if the crash came first; nothing is taken twice. A commit that fails
while the daemon runs (a full disk) leaves its claims in the work area: the same daemon journals
them as soon as the journal takes writes again, and meanwhile takes no new drops.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.clock import Clock
from gateway.config import Config
from gateway.contract.statuses import Status
from gateway.diskspace import DiskFull, is_disk_full
from gateway.drops.claims import ClaimedDrop, parse_claim_id
from gateway.drops.parking import (
    EXPLANATION_SUFFIX,
    STAYS_MARKER,
    choose_failed_name,
    explanation_text,
    park_claim,
    remove_refusal_note,
)
from gateway.errors import JournalError
from gateway.fsio import atomic_write_bytes, durable_rename, permission_denied, printable, text_name
from gateway.intake.claim import Claimer
from gateway.intake.outbox import CANNOT_MOVE, MAX_DROP_NAME_BYTES, Candidate, Orphan, OutboxScanner
from gateway.intake.validate import AcceptedDrop, Verdict, validate_claimed
from gateway.journal import originals
from gateway.journal.outage import outage_caused
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.journal.store import Journal
from gateway.logsetup import event_fields
from gateway.progress import progress
from gateway.receipts.writer import StatusWriter, status_file_name

log = logging.getLogger(__name__)

JOURNAL_BATCH = 100  # claimed drops journalled per transaction


@dataclass
class IntakeCounts:
    accepted: int = 0
    rejected: int = 0
    orphans: int = 0
    more: bool = False


AcceptedHook = Callable[[MessageRecord, AcceptedDrop], None]


class Intake:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        statuses: StatusWriter,
        clock: Clock,
        on_accepted: AcceptedHook | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.statuses = statuses
        self.clock = clock
        self.on_accepted = on_accepted
        # The explanation written in failed/ for each entry refused in place (it could not be moved).
        self._refusal_notes: dict[str, Path] = {}
        # Why claimed drops wait in the work area for the journal (a commit failed), or None; see `trouble`.
        self._journal_trouble: str | None = None
        self._journal_trouble_cause = ""
        self._journal_trouble_said = False
        self._journal_trouble_quiet = False  # the trouble was the journal outage's, which says it itself
        self._journal_retry_at = 0.0
        folders = config.folders
        self.claimer = Claimer(folders.outbox, folders.work_area)
        self.scanner = OutboxScanner(
            folders.outbox,
            clock,
            quiet_period=config.intake.quiet_period_seconds,
            incomplete_timeout=config.intake.incomplete_timeout_seconds,
        )

    # ---- start-up ------------------------------------------------------------------------------
    def recover(self) -> int:
        """Finish every claim a previous run left in the work area. Returns how many were resumed."""
        resumed = 0
        for claimed in self.claimer.claimed_drops():
            claim_id = text_name(claimed.claim_id)
            record = self.journal.find_by_claim(claim_id)
            if record is None and originals.find(self.journal, claim_id) is not None:
                # Sent, and its message row purged since, but its originals could not move on: to sent/
                # now, never taken for a new drop (that would send it again).
                self._file_sent(claim_id)
                resumed += 1
            elif record is None:
                self._journal_claim(claimed)
                resumed += 1
            elif _was_sent(self.journal, record) and claimed.folder.exists():
                # Sent, but a crash came before its originals moved on.
                if originals.find(self.journal, claim_id) is None:  # sent by a version that did not note them
                    originals.note_sent(self.journal, claim_id, record.message_id, record.drop_name or claimed.name,
                                        self.clock.now().timestamp())
                self._file_sent(claim_id)
                resumed += 1
            elif record.phase in (Phase.REJECTED, Phase.EXPIRED, Phase.FAILED) and claimed.folder.exists():
                self._park_record(record, claimed)
                resumed += 1
        self.statuses.flush()
        if resumed:
            log.info("resumed %d claimed drops left by the previous run", resumed)
        return resumed

    def _file_sent(self, claim_id: str) -> None:
        folders = self.config.folders
        try:
            originals.file_away(self.journal, claim_id, folders.work_area, folders.sent, self.clock.now().timestamp(),
                                folders.group_id)
        except (OSError, sqlite3.Error) as exc:  # the sender's next pass tries again
            log.warning("the originals of the sent claim %s could not be moved to %s yet: %s", claim_id, folders.sent,
                        exc)

    def _unjournaled(self, claimed: ClaimedDrop) -> bool:
        """A claim no journal row knows of: neither a message nor the originals of a sent one."""
        claim_id = text_name(claimed.claim_id)
        return self.journal.find_by_claim(claim_id) is None and originals.find(self.journal, claim_id) is None

    @property
    def trouble(self) -> str | None:
        """Why claimed drops wait in the work area instead of being journaled, or None (for /healthz)."""
        return self._journal_trouble

    # ---- one pass ------------------------------------------------------------------------------
    def run_once(self, only: Iterable[str] | None = None) -> IntakeCounts:
        counts = IntakeCounts()
        if self._journal_trouble is not None and not self._journal_waiting_claims(counts):
            return counts  # new drops wait in the outbox while the journal takes nothing
        result = self.scanner.scan(self.config.intake.max_drops_per_scan, only=only)
        counts.more = result.more
        claims: list[tuple[ClaimedDrop, str | None]] = []
        for candidate in result.ready:
            progress()
            try:
                claimed = self._claim(candidate)
            except PermissionError as exc:
                reason = CANNOT_MOVE.format(entry=printable(candidate.entry), error=exc.strerror)
                self._refuse_in_place(candidate.entry, reason)
                continue
            except Exception:
                # One bad drop must not stop the others; it stays in the outbox and is tried again.
                log.exception("intake of %r failed; it will be tried again", candidate.entry)
                continue
            if claimed is not None:
                claims.append((claimed, candidate.incomplete_reason))
        if claims:
            # Every claim of this pass is durable before any of them is journalled.
            self.claimer.sync()
            for start in range(0, len(claims), JOURNAL_BATCH):
                progress()
                self._journal_claims(claims[start : start + JOURNAL_BATCH], counts)
                if self._journal_trouble is not None:
                    # The rest of this pass's claims wait in the work area too, journaled with these.
                    self._journal_trouble = self._trouble_text(len(claims) - start, self._journal_trouble_cause)
                    break
                if start + JOURNAL_BATCH < len(claims):
                    # Write this batch's status files while the next batch is validated.
                    self.statuses.flush_soon()
        for orphan in result.orphans:
            try:
                self._reject_orphan(orphan)
                counts.orphans += 1
            except Exception:
                log.exception("could not move the orphan %r to failed/", orphan.entry)
        self.statuses.flush()
        return counts

    def _claim(self, candidate: Candidate) -> ClaimedDrop | None:
        """Rename the drop into the work area; the caller makes the renames durable with `claimer.sync()`."""
        claimed = self.claimer.claim(candidate, durable=False)
        self.scanner.forget(candidate.entry)
        for document in candidate.documents:
            self.scanner.forget(document)
        self._clear_refusal_notes([candidate.entry, *candidate.documents])
        return claimed

    def _clear_refusal_notes(self, entries: list[str]) -> None:
        """Entries refused in place before (they could not be moved) have left the outbox now: what failed/
        said of them then no longer holds."""
        for entry in entries:
            explanation = self._refusal_notes.pop(entry, None)
            if explanation is None or os.path.lexists(self.config.folders.outbox / entry):
                continue
            try:
                removed = remove_refusal_note(explanation)
            except OSError as exc:
                log.warning("could not remove the old explanation %s from failed/: %s", explanation.name, exc)
                continue
            if removed:
                log.info("%r has been taken from the outbox: its earlier explanation %s is removed",
                         text_name(entry), explanation.name)

    def _journal_waiting_claims(self, counts: IntakeCounts) -> bool:
        """Journal the claims a failed commit left in the work area (once per scan interval); True once done."""
        now = self.clock.monotonic()
        if now < self._journal_retry_at:
            return False
        self._journal_retry_at = now + self.config.intake.scan_interval_seconds
        waiting = [claimed for claimed in self.claimer.claimed_drops() if self._unjournaled(claimed)]
        self._journal_trouble = None
        for start in range(0, len(waiting), JOURNAL_BATCH):
            self._journal_claims([(claimed, None) for claimed in waiting[start : start + JOURNAL_BATCH]], counts)
            if self._journal_trouble is not None:
                self._journal_trouble = self._trouble_text(len(waiting) - start, self._journal_trouble_cause)
                return False
        self._journal_trouble_said = False
        self.statuses.flush()
        if self._journal_trouble_quiet:
            self._journal_trouble_quiet = False
            return True
        log.info("the journal takes drops again: %d claimed drop(s) that waited in %s are journaled; intake goes on",
                 len(waiting), self.config.folders.work_area)
        return True

    def _journal_failed(self, count: int, exc: BaseException) -> None:
        """A commit failed: its claims wait in the work area, journaled by `_journal_waiting_claims`. One line."""
        self._journal_trouble_cause = (
            DiskFull(self.config.folders.state, 0).describe() if is_disk_full(exc) else printable(str(exc))
        )
        self._journal_trouble = self._trouble_text(count, self._journal_trouble_cause)
        self._journal_retry_at = self.clock.monotonic() + self.config.intake.scan_interval_seconds
        if not self._journal_trouble_said:
            self._journal_trouble_said = True
            # The database does not answer: the journal's outage line says so, and its end, for every worker.
            self._journal_trouble_quiet = outage_caused(exc)
            if self._journal_trouble_quiet:
                return
            log.error(
                "intake could not journal %d claimed drop(s): %s; they wait in %s and are journaled by this daemon as "
                "soon as the journal takes writes again (tried every %g s); new drops wait in the outbox until then",
                count, self._journal_trouble_cause, self.config.folders.work_area,
                self.config.intake.scan_interval_seconds,
            )

    def _journaled_elsewhere(self, claimed: ClaimedDrop) -> bool:
        """Whether another node sharing the work area journaled this claim first (its start-up took up the claims
        it found there, this one's among them): the claim's row is that node's, and this one lets the drop go."""
        if self.journal.find_by_claim(text_name(claimed.claim_id)) is None:
            return False
        log.info("the claimed drop %r was journaled by another node first; this node lets it go",
                 text_name(claimed.name))
        return True

    def _trouble_text(self, count: int, cause: str) -> str:
        return (f"{count} claimed drop(s) wait in {self.config.folders.work_area} for the journal, which cannot "
                f"commit ({cause}); new drops wait in the outbox")

    def _journal_claim(self, claimed: ClaimedDrop, incomplete_reason: str | None = None) -> MessageRecord | None:
        """Journal one (durably) claimed drop; None when that failed and the claim waits for the next start."""
        counts = IntakeCounts()
        records = self._journal_claims([(claimed, incomplete_reason)], counts)
        return records[0] if records else None

    def _journal_claims(
        self, claims: list[tuple[ClaimedDrop, str | None]], counts: IntakeCounts
    ) -> list[MessageRecord]:
        """Validate claimed drops and journal them in one transaction; then park the rejected ones.

        Validation (which may hash large documents) runs before the transaction, so the journal is
        held only for the inserts. A failure with one drop leaves its claim in the work area, where
        `recover()` takes it up at the next start, and does not stop the others. When the journal
        itself fails (the commit, or SQLite under one insert), every claim of the batch waits in the
        work area and this daemon journals them once it can (`trouble` says so meanwhile).
        """
        verdicts: list[tuple[ClaimedDrop, str | None, Verdict]] = []
        for claimed, incomplete_reason in claims:
            verdicts.append((claimed, incomplete_reason, self._validate(claimed)))
        journalled: list[tuple[ClaimedDrop, MessageRecord, AcceptedDrop | None]] = []
        try:
            with self.journal.transaction():
                message_ids: set[str] = set()
                for claimed, incomplete_reason, verdict in verdicts:
                    try:
                        if verdict.accepted is not None and verdict.message_id in message_ids:
                            # Two drops of this batch share a messageId: validate again, seeing the first one.
                            verdict = self._validate(claimed)
                        with self.journal.savepoint():
                            record, accepted = self._record_verdict(claimed, verdict, incomplete_reason)
                    except sqlite3.OperationalError:
                        raise  # the journal's trouble, not this drop's: the whole batch waits
                    except Exception:
                        if self._journaled_elsewhere(claimed):
                            continue
                        log.exception("could not journal the claimed drop %r; retried at the next start", claimed.name)
                        continue
                    message_ids.add(verdict.message_id)
                    journalled.append((claimed, record, accepted))
        except sqlite3.OperationalError as exc:
            self._journal_failed(len(verdicts), exc)
            return []
        # Committed: now the visible side effects.
        records: list[MessageRecord] = []
        for claimed, record, accepted in journalled:
            records.append(record)
            if accepted is None:
                counts.rejected += 1
                count = len(record.errors)
                log.info("rejected drop %r (messageId %s): %d problem(s)", claimed.name, record.message_id, count,
                         extra=event_fields(record.message_id, record.drop_name, status="FEIL"))
                try:
                    self._park_record(record, claimed)
                except Exception:
                    log.exception("could not move the rejected drop %r to failed/; retried at next start", claimed.name)
                continue
            counts.accepted += 1
            log.info("accepted drop %r as message %s", claimed.name, record.message_id,
                     extra=event_fields(record.message_id, record.drop_name, status="OPPRETTET"))
            if self.on_accepted is not None:
                self.on_accepted(record, accepted)
        return records

    def _validate(self, claimed: ClaimedDrop) -> Verdict:
        """The verdict on a claimed drop; a drop that breaks validation itself is rejected, never left behind."""
        try:
            return validate_claimed(claimed, self.config, self.journal, self.clock)
        except Exception as exc:
            log.exception("checking the claimed drop %r failed; it is rejected", text_name(claimed.name))
            return Verdict(
                None,
                (
                    f"the gateway could not check this drop ({printable(type(exc).__name__)}: {printable(str(exc))}); "
                    "this is a fault in the gateway: report it with the drop, and drop it again",
                ),
                str(uuid.uuid4()),
            )

    def _record_verdict(
        self, claimed: ClaimedDrop, verdict: Verdict, incomplete_reason: str | None
    ) -> tuple[MessageRecord, AcceptedDrop | None]:
        """Journal rows for one verdict; the caller holds the transaction."""
        problems = list(verdict.problems)
        if incomplete_reason:
            problems.insert(0, incomplete_reason)
        sidecar = verdict.sidecar
        accepted = verdict.accepted
        # Names go into the journal as text: a name that is not UTF-8 (always rejected) is stored escaped.
        drop_name = text_name(claimed.name)
        common = {
            "claim_id": text_name(claimed.claim_id),
            "drop_name": drop_name,
            "receiver": sidecar.receiver.removeprefix("0192:") if sidecar else None,
            "message_type": sidecar.message_type if sidecar else None,
            "client_reference": sidecar.client_reference if sidecar else None,
        }
        if accepted is None or problems:
            failed_name = choose_failed_name(self.config.folders.failed, drop_name)
            record = self.journal.create(
                direction="out",
                message_id=verdict.message_id,
                status_name=self._status_name(drop_name, verdict.message_id),
                phase=Phase.REJECTED,
                errors=problems,
                detail={"failed_name": failed_name, "kind": claimed.kind},
                conversation_id=sidecar.conversation_id if sidecar else None,
                **common,
            )
            self.journal.add_event(record.row, Status.FEIL, description="the drop was rejected: " + problems[0])
            return record, None
        record = self.journal.create(
            direction="out",
            message_id=accepted.message_id,
            status_name=self._status_name(drop_name, accepted.message_id),
            phase=Phase.ACCEPTED,
            deadline=accepted.deadline,
            conversation_id=accepted.conversation_id,
            sender=accepted.sender,
            process=accepted.process,
            detail={
                "kind": claimed.kind,
                "sidecar": claimed.sidecar_name,
                "arkivmelding_file": accepted.arkivmelding_file,
                "total_bytes": accepted.total_bytes,
            },
            **common,
        )
        description = "the drop was accepted"
        if verdict.warnings:
            description += "; warning: " + "; warning: ".join(verdict.warnings)
        self.journal.add_event(record.row, Status.OPPRETTET, description=description)
        return record, accepted

    def _status_name(self, drop_name: str, message_id: str) -> str:
        encoded = drop_name.encode("utf-8")
        if len(encoded) > MAX_DROP_NAME_BYTES:  # an escaped name can be three times its length
            drop_name = encoded[:MAX_DROP_NAME_BYTES].decode("utf-8", "ignore") + "~"
        name = status_file_name(drop_name, message_id, "out")
        counter = 1
        while self.journal.status_name_taken(name) or (self.config.folders.status / name).exists():
            name = f"{drop_name}.{message_id}.{counter}.xml"
            counter += 1
        return name

    def _park_record(self, record: MessageRecord, claimed: ClaimedDrop) -> None:
        park_claim(record, claimed.folder, text_name(claimed.name), self.config.folders.failed, self.clock.now())

    def park_expired(self, record: MessageRecord) -> None:
        claimed = parse_claim_id(record.claim_id or "", self.config.folders.work_area)
        if claimed is not None and claimed.folder.exists():
            self._park_record(record, claimed)

    def _reject_orphan(self, orphan: Orphan) -> None:
        source = self.config.folders.outbox / orphan.entry
        if not os.path.lexists(source):
            return
        failed = self.config.folders.failed
        name = text_name(orphan.entry)
        failed_name = choose_failed_name(failed, name)
        text = explanation_text(
            name, None, [printable(orphan.reason)], self.clock.now(), headline="efm-gateway could not use this entry"
        )
        explanation = failed / f"{failed_name}{EXPLANATION_SUFFIX}"
        atomic_write_bytes(explanation, text.encode("utf-8"))
        try:
            durable_rename(source, failed / failed_name)
        except OSError as exc:
            if not permission_denied(exc):
                raise
            atomic_write_bytes(explanation, (text + _STAYS.format(name=name, error=exc.strerror)).encode("utf-8"))
            self._refusal_notes[orphan.entry] = explanation
            self.scanner.refuse_in_place(orphan.entry)
            log.warning("rejected %r, but could not move it to failed/ (%s); it stays", name, exc.strerror)
            return
        self.scanner.forget(orphan.entry)
        log.info("moved %r from the outbox to failed/: %s", name, printable(orphan.reason))

    def _refuse_in_place(self, entry: str, reason: str) -> None:
        """An entry intake cannot take (nor move): explain it in failed/ and leave it until it changes."""
        name = text_name(entry)
        failed = self.config.folders.failed
        text = explanation_text(
            name, None, [reason], self.clock.now(), headline="efm-gateway could not take this drop"
        ) + _STAYS.format(name=name, error="permission denied")
        explanation = failed / f"{choose_failed_name(failed, name)}{EXPLANATION_SUFFIX}"
        atomic_write_bytes(explanation, text.encode("utf-8"))
        self._refusal_notes[entry] = explanation
        self.scanner.refuse_in_place(entry)
        log.warning("could not take %r from the outbox: %s; it stays there until it changes", name, reason)


_STAYS = (
    "It could not be moved here ({error}): {name!r} " + STAYS_MARKER + ". The gateway leaves it alone until "
    "it changes (its permissions, say); then it is looked at again.\n"
)


def _was_sent(journal: Journal, record: MessageRecord) -> bool:
    """The channel took the message: SENT and what follows it, and a sent one that expired or failed later."""
    if record.phase in (Phase.SENT, Phase.DELIVERED, Phase.DONE):
        return True
    return record.phase in (Phase.EXPIRED, Phase.FAILED) and journal.has_event(record.row, Status.SENDT)


# SENDING is the sender's: it asks the channel whether an interrupted upload finished before it expires one.
EXPIRABLE = (Phase.ACCEPTED, Phase.SENT, Phase.RECEIVED)


def expire_overdue(journal: Journal, intake: Intake, clock: Clock, limit: int = 500) -> int:
    """LEVETID_UTLOPT for every unfinished message past its deadline that has not been delivered."""
    expired = 0
    for candidate in journal.open_past_deadline(clock.now().timestamp(), EXPIRABLE, limit):
        try:
            with journal.transaction():
                # Decide inside the transaction: a LEVERT or a phase change committed meanwhile wins.
                record = journal.get(candidate.row)
                if record.phase not in EXPIRABLE or journal.has_event(record.row, Status.LEVERT):
                    continue
                last_error = record.detail.get("last_error") if record.phase == Phase.ACCEPTED else None
                if last_error:
                    # Its sends kept failing: that is the story, in the words of the last failure.
                    reason = f"the deadline passed while sending kept failing; the last attempt: {last_error}"
                    moved = journal.move(record.row, Phase.FAILED, errors=[*record.errors, reason])
                    journal.add_event(record.row, Status.FEIL, description=reason)
                else:
                    moved = journal.move(
                        record.row,
                        Phase.EXPIRED,
                        errors=[*record.errors, "the deadline passed before the message was delivered"],
                    )
                    journal.add_event(record.row, Status.LEVETID_UTLOPT, description="the deadline passed")
            if record.direction == "out" and record.phase == Phase.ACCEPTED:
                intake.park_expired(moved)  # a sent message's drop is in sent/ already
            expired += 1
        except JournalError:
            log.info("message %s changed phase while expiring; left as it is", candidate.message_id)
        except OSError:
            log.exception("could not park expired message %s; recovery at the next start will", candidate.message_id)
    return expired
