"""What an operator may do to one message while the daemon runs: retry, cancel, release.

Each action decides inside one short journal transaction (gateway.journal.operator), moves files
only where the journal's recovery rules make the move safe at every instant, and returns the lines
that say what it changed. A refusal is a JournalError that says why and what to do instead.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.clock import Clock, isoformat
from gateway.config import Config
from gateway.contract.statuses import Status
from gateway.drops.claims import parse_claim_id
from gateway.drops.parking import EXPLANATION_SUFFIX, park_claim
from gateway.errors import JournalError
from gateway.fsio import durable_rename
from gateway.inbound.quarantine import QUARANTINE_FOLDER, find_kept, reference_of_kept
from gateway.journal.operator import OperatorJournal
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord
from gateway.operator.journal_source import journal_source, where
from gateway.operator.nodes_view import read_nodes

CANCELLED = "cancelled by the operator"
# A message due within this long may already be in the daemon's hands (routing, packing): not cancelled.
CANCEL_MARGIN_SECONDS = 5.0
# Route and transfer of a failed message are found afresh when it is retried.
_FORGOTTEN_ON_RETRY = ("last_error", "service_record", "reference", "expects_receipt")


def retry(config: Config, key: str, clock: Clock) -> list[str]:
    """Send a message again now: one waiting out a back-off, or one that failed before it was sent."""
    journal = _operator_journal(config, clock)
    try:
        record = _one(journal, key, "out", "retry")
        if record.phase == Phase.FAILED:
            return _retry_failed(config, journal, record, clock.now())
        if record.phase not in (Phase.ACCEPTED, Phase.SENDING):
            raise JournalError(_why_not(record, "retried"))
        now = clock.now()
        with journal.step():
            record = _fresh(journal, record, (Phase.ACCEPTED, Phase.SENDING), "retried")
            due_at = record.next_attempt_at
            if due_at is None or due_at <= now.timestamp():
                return [
                    f"message {record.message_id} is due now (phase {record.phase}): the daemon sends it at its "
                    "next pass; nothing changed"
                ]
            journal.change(
                record, next_attempt_at=now.timestamp(),
                detail=_logged(record.detail, "retry", now, f"due at once instead of {_when(due_at)}"),
            )
        last = record.detail.get("last_error")
        return [
            f"message {record.message_id}: due now instead of {_when(due_at)} "
            f"(after {record.attempts} failed attempt(s){'; the last: ' + last if last else ''})",
            f"phase {record.phase}, unchanged; the daemon sends it within "
            f"{config.network.send_interval_seconds:g} s",
        ]
    finally:
        journal.close()


def _retry_failed(config: Config, journal: OperatorJournal, record: MessageRecord, now: datetime) -> list[str]:
    if Status.SENDT in journal.statuses(record.row):
        raise JournalError(
            f"message {record.message_id} was sent, and then failed ({'; '.join(record.errors) or 'FEIL'}): "
            "the receiver has it under this messageId and would ignore it a second time; drop it again "
            "as a new message (a new messageId)"
        )
    if record.deadline is not None and record.deadline <= now:
        raise JournalError(
            f"message {record.message_id}'s deadline passed at {isoformat(record.deadline)}: drop it again "
            "with a later <deadline>"
        )
    claimed = parse_claim_id(record.claim_id or "", config.folders.work_area)
    if claimed is None:
        raise JournalError(f"message {record.message_id} has no claimed drop to send again; drop it again")
    parked = None if claimed.folder.exists() else find_parked(config.folders.failed, record.message_id)
    if parked is None and not claimed.folder.exists():
        raise JournalError(
            f"the originals of message {record.message_id} are no longer in {config.folders.failed} "
            f"(no {EXPLANATION_SUFFIX} there names it); drop the message again"
        )
    # The originals go back first: should the journal not take the retry (or a crash come now), the
    # daemon's recovery parks a failed message's claim in failed/ again, as before.
    if parked is not None:
        durable_rename(parked, claimed.folder)
    try:
        with journal.step():
            record = _fresh(journal, record, (Phase.FAILED,), "retried")
            detail = {key: value for key, value in record.detail.items() if key not in _FORGOTTEN_ON_RETRY}
            detail["previous_errors"] = [*record.detail.get("previous_errors", []), *record.errors]
            journal.change(
                record, Phase.ACCEPTED, attempts=0, next_attempt_at=now.timestamp(), errors=[],
                detail=_logged(detail, "retry", now, "failed; sent again from the start"),
            )
            journal.retire_failure(record.row, f"the operator sent it again at {isoformat(now)}")
    except BaseException:
        if parked is not None and claimed.folder.exists():
            durable_rename(claimed.folder, parked)
        raise
    if parked is not None:
        (parked.parent / f"{parked.name}{EXPLANATION_SUFFIX}").unlink(missing_ok=True)
    return [
        f"message {record.message_id}: phase failed → accepted (due now); its FEIL is kept in the history as ANNET",
        (f"its drop moved back from {parked} to the work area" if parked else "its drop is in the work area")
        + f"; the daemon routes and sends it again within {config.network.send_interval_seconds:g} s",
    ]


def cancel(config: Config, key: str, clock: Clock) -> list[str]:
    """End a message that is not yet sent as FEIL "cancelled by the operator"; its drop goes to failed/."""
    journal = _operator_journal(config, clock)
    try:
        record = _one(journal, key, "out", "cancel")
        now = clock.now()
        sender = _running_sender(config, now.timestamp()) if config.network_configured else None
        with journal.step():
            record = _fresh(journal, record, (Phase.ACCEPTED,), "cancelled")
            soon = now.timestamp() + CANCEL_MARGIN_SECONDS
            due_soon = record.next_attempt_at is None or record.next_attempt_at <= soon
            if due_soon and sender is not None:
                raise JournalError(
                    f"message {record.message_id} is due now, so the running daemon{sender} may be sending it at "
                    "this moment; nothing changed. If the send fails, the message waits out a back-off and can be "
                    "cancelled then (or stop the daemon, then cancel it)"
                )
            journal.change(
                record, Phase.FAILED, errors=[*record.errors, CANCELLED],
                detail=_logged(record.detail, "cancel", now, CANCELLED),
            )
            journal.add_event(record.row, Status.FEIL, CANCELLED)
            record = journal.live("out", record.message_id) or record
    finally:
        journal.close()
    # The journal first: a crash before the drop is parked leaves a failed claim, which the daemon's
    # recovery parks at its next start.
    claimed = parse_claim_id(record.claim_id or "", config.folders.work_area)
    parked_note = "it had no drop in the work area"
    if claimed is not None and claimed.folder.exists():
        park_claim(record, claimed.folder, claimed.name, config.folders.failed, now)
        parked = find_parked(config.folders.failed, record.message_id)
        parked_note = f"its drop is in {parked or config.folders.failed}, with the reason beside it"
    return [
        f"message {record.message_id}: phase accepted → failed, status FEIL ({CANCELLED})",
        parked_note + "; the daemon rewrites its status file within seconds",
    ]


def release(config: Config, key: str, clock: Clock) -> list[str]:
    """Take a quarantined incoming message again: the receiver opens its kept package at its next poll."""
    journal = _operator_journal(config, clock)
    try:
        record = _one(journal, key, "in", "release")
        if record.phase != Phase.QUARANTINED:
            raise JournalError(_why_not(record, "released"))
        quarantine = config.folders.state / QUARANTINE_FOLDER
        kept = find_kept(quarantine, record)
        if kept is None:
            raise JournalError(
                f"the raw package of message {record.message_id} is not in {quarantine} "
                f"(no {record.message_id}.*); ask the sender to send the message again"
            )
        reference = reference_of_kept(record.message_id, kept.name)
        now = clock.now()
        with journal.step():
            record = _fresh(journal, record, (Phase.QUARANTINED,), "released")
            detail = dict(record.detail)
            detail["previous_errors"] = [*detail.get("previous_errors", []), *record.errors]
            detail["released"] = {"kept": kept.name, "reference": reference, "at": isoformat(now)}
            detail = _logged(detail, "release", now, "quarantined; opened again")
            journal.change(record, Phase.RECEIVED, errors=[], detail=detail)
            journal.retire_failure(record.row, f"released by the operator at {isoformat(now)}")
    finally:
        journal.close()
    return [
        f"message {record.message_id}: phase quarantined → received; its FEIL is kept in the history as ANNET",
        f"the daemon's {record.channel or ''} receiver opens {kept} again at its next poll: into the inbox when "
        "it now passes every check, else back to quarantine with the reason (see `efm-gateway status "
        f"{record.message_id}`)",
    ]


# ---- helpers ------------------------------------------------------------------------------------------
def _operator_journal(config: Config, clock: Clock) -> OperatorJournal:
    """The configured journal, for one operator's write; an unreachable database is a refusal that says so."""
    source = journal_source(config)
    try:
        return OperatorJournal(source, clock)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot write to the journal in {where(config)}: {exc}; nothing was changed") from None


def _one(journal: OperatorJournal, key: str, direction: str, verb: str) -> MessageRecord:
    found = [record for record in journal.find(key) if record.phase != Phase.REJECTED or direction == "in"]
    matching = [record for record in found if record.direction == direction]
    if not matching:
        rejected = [record for record in journal.find(key) if record.phase == Phase.REJECTED]
        if rejected:
            raise JournalError(
                f"{key}: the drop was never accepted (rejected: {'; '.join(rejected[0].errors)}); correct it and "
                "drop it again"
            )
        other = "incoming" if direction == "out" else "outgoing"
        if found:
            hint = "release" if direction == "out" else "retry or cancel"
            raise JournalError(f"{key} is an {other} message; only {hint} applies to it")
        raise JournalError(f"no message {key} in the journal")
    if len({record.message_id for record in matching}) > 1:
        ids = ", ".join(sorted({record.message_id for record in matching}))
        raise JournalError(f"{key} names several messages ({ids}); give the messageId to {verb}")
    return matching[-1]


def _fresh(journal: OperatorJournal, seen: MessageRecord, phases: tuple[Phase, ...], verb: str) -> MessageRecord:
    """Inside the step: the row as it is now; the daemon's change committed meanwhile wins."""
    record = journal.live(seen.direction, seen.message_id)
    if record is not None and record.phase == seen.phase and record.phase not in phases:
        raise JournalError(_why_not(record, verb))
    if record is None or record.phase not in phases:
        now_phase = record.phase if record else "gone"
        raise JournalError(
            f"message {seen.message_id} changed from {seen.phase} to {now_phase} a moment ago; nothing was "
            f"{verb}: look at it again with `efm-gateway status {seen.message_id}`"
        )
    return record


def _why_not(record: MessageRecord, verb: str) -> str:
    reasons = {
        Phase.SENDING: "a send is under way or was interrupted: the channel may have it already; the daemon "
        "finishes or resumes that transfer itself",
        Phase.SENT: "it is sent; the receiver's statuses come in by themselves",
        Phase.DELIVERED: "it is delivered",
        Phase.DONE: "it is finished",
        Phase.EXPIRED: "its deadline passed; drop it again with a later <deadline>",
        Phase.FAILED: "it has failed already; `efm-gateway retry` sends it again",
        Phase.ACCEPTED: "it is waiting to be sent",
        Phase.RECEIVED: "it is being taken (a released message is opened again at the receiver's next poll)",
        Phase.IN_INBOX: "it is in the inbox, waiting for the archive system",
        Phase.TAKEN: "the archive system has taken it from the inbox",
        Phase.QUARANTINED: "it is quarantined; `efm-gateway release` takes it again",
    }
    return f"message {record.message_id} cannot be {verb}: {reasons.get(record.phase, record.phase)}"


def _logged(detail: dict[str, Any], action: str, now: datetime, what: str) -> dict[str, Any]:
    """`detail` with the operator's action added to its log (shown by `status` and the operator page)."""
    entry = {"action": action, "at": isoformat(now), "what": what}
    return {**detail, "operator": [*detail.get("operator", []), entry]}


def _when(epoch: float) -> str:
    return isoformat(datetime.fromtimestamp(epoch, UTC))


def find_parked(failed: Path, message_id: str) -> Path | None:
    """The drop in failed/ whose explanation names `message_id` (its name may carry a counter)."""
    marker = f"messageId: {message_id}\n"
    try:
        entries = os.listdir(failed)
    except FileNotFoundError:
        return None
    for entry in sorted(entries):
        if not entry.endswith(EXPLANATION_SUFFIX):
            continue
        try:
            with open(failed / entry, encoding="utf-8", errors="replace") as handle:
                head = handle.read(4096)
        except OSError:
            continue
        candidate = failed / entry[: -len(EXPLANATION_SUFFIX)]
        if marker in head and (candidate.exists() or candidate.is_symlink()):
            return candidate
    return None


def _running_sender(config: Config, now: float) -> str | None:
    """Who may be sending this moment: "" for the daemon on this host (it holds the instance lock), " (node N on
    H)" for a live node on the shared journal; None when no daemon runs."""
    if daemon_pid(config.folders.lock_path) is not None:
        return ""
    if config.journal.url is None:
        return None
    engine = journal_source(config)
    try:
        reader = engine.reader()
        nodes = read_nodes(lambda sql: reader.execute(sql).fetchall(), now)
    except sqlite3.Error:  # the nodes cannot be read: one of them may be sending
        return " (on one of the nodes)"
    finally:
        engine.close()
    live = [node for node in nodes if node.live]
    return f" (node {live[0].row.name} on {live[0].row.host})" if live else None


def daemon_pid(lock_path: Path) -> int | None:
    """The pid of the daemon holding the single-instance lock, read from /proc/locks (taking the lock
    to find out would stop a daemon starting at that moment); None when no one holds it."""
    try:
        identity = os.stat(lock_path)
    except FileNotFoundError:
        return None
    wanted = (os.major(identity.st_dev), os.minor(identity.st_dev), identity.st_ino)
    try:
        with open("/proc/locks") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return -1  # cannot tell: take it as running
    for line in lines:
        fields = line.replace("->", "").split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        major, minor, inode = fields[5].split(":")
        if (int(major, 16), int(minor, 16), int(inode)) == wanted:
            return int(fields[4])
    return None
