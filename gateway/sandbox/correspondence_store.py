"""Where the sandbox correspondence service keeps correspondences: SQLite (WAL), attachments beside it.

The lifecycle runs on the service's clock, worked out whenever the store is read (no timer thread):
Initialized → ReadyForPublish → Published once `publish_delay_s` has passed (and the requested
publish time has come), when the notification is "sent" (recorded, see `notifications()`); then
Read once `read_delay_s` more has passed, as if someone at the recipient had opened it (None: only
`mark_read` or the API's markasread do that). A recipient in `failing_recipients` gets Failed with
that reason instead of Published; `fail()` does the same to one correspondence. A restarted sandbox
on the same data folder keeps everything.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.clock import Clock
from gateway.sandbox.correspondence_records import (
    CorrespondenceOptions,
    RecordedNotification,
    StoredAttachment,
    StoredCorrespondence,
    request_echo,
)
from gateway.sandbox.correspondence_rules import UploadRequest

REMINDER_AFTER = timedelta(days=7)  # Altinn sends the reminder a week after the notification, if unread
STATUS_TEXTS = {
    "Initialized": "Correspondence initialized",
    "ReadyForPublish": "Correspondence is ready for publish",
    "Published": "Correspondence published to the recipient's Altinn inbox",
    "Fetched": "Correspondence fetched by the recipient",
    "Read": "Correspondence read by the recipient",
    "Confirmed": "Correspondence confirmed by the recipient",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS correspondence (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,               -- bare orgnr, from the access token
    recipient TEXT NOT NULL,            -- bare orgnr or national identity number
    resource_id TEXT NOT NULL,
    senders_reference TEXT NOT NULL,
    idempotent_key TEXT,
    request TEXT NOT NULL,              -- JSON: what /details echoes back of the upload
    created TEXT NOT NULL,
    publish_due TEXT NOT NULL,
    status TEXT NOT NULL,
    status_text TEXT NOT NULL,
    status_changed TEXT NOT NULL,
    published TEXT,
    read TEXT
);
CREATE INDEX IF NOT EXISTS correspondence_by_reference ON correspondence(sender, senders_reference);
CREATE INDEX IF NOT EXISTS correspondence_by_status ON correspondence(status);
CREATE UNIQUE INDEX IF NOT EXISTS correspondence_by_key ON correspondence(sender, idempotent_key, recipient);
CREATE TABLE IF NOT EXISTS status_event (
    correspondence_id TEXT NOT NULL,
    status TEXT NOT NULL,
    status_text TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS status_event_by_correspondence ON status_event(correspondence_id);
CREATE TABLE IF NOT EXISTS attachment (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    file_name TEXT NOT NULL,
    display_name TEXT,
    senders_reference TEXT NOT NULL,
    data_type TEXT,
    is_encrypted INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS correspondence_attachment (
    correspondence_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    attachment_id TEXT NOT NULL,
    PRIMARY KEY (correspondence_id, position)
);
CREATE TABLE IF NOT EXISTS notification (
    id TEXT PRIMARY KEY,
    correspondence_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    is_reminder INTEGER NOT NULL,
    channel TEXT NOT NULL,
    template TEXT NOT NULL,
    email_subject TEXT,
    email_body TEXT,
    sms_body TEXT,
    requested_send_time TEXT NOT NULL,
    created TEXT NOT NULL,
    sent TEXT,                           -- when the sandbox "sent" it; NULL while waiting
    cancelled TEXT                       -- a reminder no longer needed (read in time), or a failed publish
);
CREATE INDEX IF NOT EXISTS notification_by_correspondence ON notification(correspondence_id);
"""


class CorrespondenceStore:
    """Thread-safe: one connection guarded by a lock (the sandbox's load is small)."""

    def __init__(self, folder: Path, clock: Clock, options: CorrespondenceOptions | None = None,
                 names: Mapping[str, str] | None = None) -> None:
        self.folder = folder
        self.clock = clock
        self.options = options or CorrespondenceOptions()
        self.names = dict(names or {})  # orgnr -> name, for $correspondenceRecipientName$
        self.files = folder / "attachments"
        self.incoming = folder / "incoming"
        self.files.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        for leftover in self.incoming.glob("*.part"):  # uploads cut off by a stop
            leftover.unlink(missing_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(folder / "correspondence.sqlite3", check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survive a killed sandbox, not a power cut
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def attachment_path(self, attachment_id: str) -> Path:
        return self.files / f"{attachment_id}.bin"

    # Writing

    def create(self, sender: str, upload: UploadRequest) -> tuple[list[tuple[str, str]], list[str]]:
        """Record an upload whose files are still at their `.part` paths: moves them into place.

        Returns ([(correspondence id, recipient)], attachment ids). One correspondence per recipient,
        sharing the attachments, as Altinn does.
        """
        now = self.clock.now()
        stamp = now.isoformat()
        publish_due = now + timedelta(seconds=self.options.publish_delay_s)
        if upload.requested_publish_time is not None:
            publish_due = max(publish_due, upload.requested_publish_time)
        attachment_ids = [str(uuid.uuid4()) for _ in upload.attachments]
        created: list[tuple[str, str]] = []
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for attachment_id, attachment in zip(attachment_ids, upload.attachments, strict=True):
                self._db.execute(
                    "INSERT INTO attachment VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (attachment_id, sender, attachment.file_name, attachment.display_name,
                     attachment.senders_reference, attachment.data_type, int(attachment.is_encrypted),
                     attachment.upload.md5, attachment.upload.size, stamp),
                )
            echo = json.dumps(request_echo(upload))
            for recipient in upload.recipients:
                correspondence_id = str(uuid.uuid4())
                self._db.execute(
                    "INSERT INTO correspondence VALUES (?,?,?,?,?,?,?,?,?,'Initialized',?,?,NULL,NULL)",
                    (correspondence_id, sender, recipient, upload.resource_id, upload.senders_reference,
                     upload.idempotent_key, echo, stamp, publish_due.isoformat(), STATUS_TEXTS["Initialized"],
                     stamp),
                )
                self._event(correspondence_id, "Initialized", STATUS_TEXTS["Initialized"], now)
                self._db.executemany(
                    "INSERT INTO correspondence_attachment VALUES (?,?,?)",
                    [(correspondence_id, position, attachment_id)
                     for position, attachment_id in enumerate(attachment_ids)],
                )
                if upload.notification is not None:
                    self._order_notification(correspondence_id, recipient, upload, publish_due, now)
                created.append((correspondence_id, recipient))
            # Last, so that a refused insert (a concurrent upload with the same idempotency key) leaves
            # the files at their .part names for the caller to discard.
            for attachment_id, attachment in zip(attachment_ids, upload.attachments, strict=True):
                attachment.upload.path.replace(self.attachment_path(attachment_id))
        return created, attachment_ids

    def _order_notification(self, correspondence_id: str, recipient: str, upload: UploadRequest,
                            publish_due: datetime, now: datetime) -> None:
        order = upload.notification
        assert order is not None
        send_at = max(publish_due, order.requested_send_time or publish_due)
        name = self.names.get(recipient, recipient)

        def filled(text: str | None) -> str | None:
            return text.replace("$correspondenceRecipientName$", name) if text is not None else None

        if order.template == "GenericAltinnMessage":
            texts: tuple[str | None, ...] = (
                "Du har mottatt en melding i Altinn", f"{name}: Du har mottatt en melding i Altinn-innboksen.",
                f"{name}: Du har mottatt en melding i Altinn.",
            )
            reminder_texts = texts
        else:
            texts = (order.email_subject, order.email_body, order.sms_body)
            reminder_texts = (order.reminder_email_subject, order.reminder_email_body, order.reminder_sms_body)
        rows = [(False, order.channel, texts, send_at)]
        if order.send_reminder:
            rows.append((True, order.reminder_channel or order.channel, reminder_texts, send_at + REMINDER_AFTER))
        for is_reminder, channel, (subject, body, sms), due in rows:
            self._db.execute(
                "INSERT INTO notification VALUES (?,?,?,?,?,?,?,?,?,?,?,NULL,NULL)",
                (str(uuid.uuid4()), correspondence_id, recipient, int(is_reminder), channel, order.template,
                 filled(subject), filled(body), filled(sms), due.isoformat(), now.isoformat()),
            )

    def _event(self, correspondence_id: str, status: str, text: str, at: datetime) -> None:
        stamp = at.isoformat()
        self._db.execute("INSERT INTO status_event VALUES (?,?,?,?)", (correspondence_id, status, text, stamp))
        self._db.execute("UPDATE correspondence SET status = ?, status_text = ?, status_changed = ? WHERE id = ?",
                         (status, text, stamp, correspondence_id))

    def advance(self) -> None:
        """Move every correspondence along whose time has come (see the module docstring)."""
        now = self.clock.now()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            due = self._db.execute(
                "SELECT id, recipient, publish_due FROM correspondence WHERE status = 'Initialized'"
            ).fetchall()
            for correspondence_id, recipient, publish_due in due:
                moment = datetime.fromisoformat(publish_due)
                if moment > now:
                    continue
                self._event(correspondence_id, "ReadyForPublish", STATUS_TEXTS["ReadyForPublish"], moment)
                reason = self.options.failing_recipients.get(recipient)
                if reason is not None:
                    self._fail(correspondence_id, reason, moment)
                    continue
                self._event(correspondence_id, "Published", STATUS_TEXTS["Published"], moment)
                self._db.execute("UPDATE correspondence SET published = ? WHERE id = ?",
                                 (moment.isoformat(), correspondence_id))
            if self.options.read_delay_s is not None:
                cutoff = now - timedelta(seconds=self.options.read_delay_s)
                unread = self._db.execute(
                    "SELECT id, published FROM correspondence WHERE status = 'Published'"
                ).fetchall()
                for correspondence_id, published in unread:
                    read_at = datetime.fromisoformat(published) + timedelta(seconds=self.options.read_delay_s)
                    if datetime.fromisoformat(published) <= cutoff:
                        self._read(correspondence_id, read_at)
            self._send_notifications(now)

    def _send_notifications(self, now: datetime) -> None:
        waiting = self._db.execute(
            "SELECT n.id, n.is_reminder, n.requested_send_time, c.status, c.published, c.read "
            "FROM notification n JOIN correspondence c ON c.id = n.correspondence_id "
            "WHERE n.sent IS NULL AND n.cancelled IS NULL"
        ).fetchall()
        for notification_id, is_reminder, requested, status, published, read in waiting:
            send_at = datetime.fromisoformat(requested)
            if status == "Failed":
                self._db.execute("UPDATE notification SET cancelled = ? WHERE id = ?",
                                 (now.isoformat(), notification_id))
            elif is_reminder and read is not None and datetime.fromisoformat(read) <= send_at:
                self._db.execute("UPDATE notification SET cancelled = ? WHERE id = ?", (read, notification_id))
            elif published is not None and send_at <= now:
                self._db.execute("UPDATE notification SET sent = ? WHERE id = ?",
                                 (send_at.isoformat(), notification_id))

    def _read(self, correspondence_id: str, at: datetime) -> None:
        self._event(correspondence_id, "Read", STATUS_TEXTS["Read"], at)
        self._db.execute("UPDATE correspondence SET read = COALESCE(read, ?) WHERE id = ?",
                         (at.isoformat(), correspondence_id))

    def _fail(self, correspondence_id: str, reason: str, at: datetime) -> None:
        self._event(correspondence_id, "Failed", reason, at)

    def mark_read(self, correspondence_id: str) -> bool:
        """The recipient opened it: Read now. False unless it is Published (or already Read)."""
        self.advance()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT status FROM correspondence WHERE id = ?", (correspondence_id,)).fetchone()
            if row is None or row[0] not in ("Published", "Fetched", "Read"):
                return False
            if row[0] != "Read":
                self._read(correspondence_id, self.clock.now())
        self.advance()
        return True

    def confirm(self, correspondence_id: str) -> bool:
        """The recipient confirmed it (after reading it); False when it is not Read yet."""
        self.advance()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT status FROM correspondence WHERE id = ?", (correspondence_id,)).fetchone()
            if row is None or row[0] not in ("Read", "Confirmed"):
                return False
            if row[0] == "Read":
                self._event(correspondence_id, "Confirmed", STATUS_TEXTS["Confirmed"], self.clock.now())
        return True

    def fail(self, correspondence_id: str, reason: str) -> bool:
        """Make a correspondence Failed with `reason` (for tests). False if there is no such one."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute("SELECT 1 FROM correspondence WHERE id = ?", (correspondence_id,)).fetchone() is None:
                return False
            self._fail(correspondence_id, reason, self.clock.now())
        self.advance()
        return True

    # Reading (each read first moves the lifecycle along)

    def get(self, correspondence_id: str) -> StoredCorrespondence | None:
        self.advance()
        with self._lock:
            row = self._db.execute(
                "SELECT id, sender, recipient, resource_id, senders_reference, request, created, status, "
                "status_text, status_changed, published, read FROM correspondence WHERE id = ?",
                (correspondence_id,),
            ).fetchone()
            if row is None:
                return None
            history = [tuple(event) for event in self._db.execute(
                "SELECT status, status_text, at FROM status_event WHERE correspondence_id = ? ORDER BY rowid",
                (correspondence_id,),
            )]
            attachments = [self._attachment(attachment_row) for attachment_row in self._db.execute(
                "SELECT a.id, a.file_name, a.display_name, a.senders_reference, a.data_type, a.is_encrypted, "
                "a.checksum, a.size, a.created FROM correspondence_attachment ca "
                "JOIN attachment a ON a.id = ca.attachment_id WHERE ca.correspondence_id = ? ORDER BY ca.position",
                (correspondence_id,),
            )]
            notifications = self._notifications("WHERE correspondence_id = ?", (correspondence_id,))
        return StoredCorrespondence(
            id=row[0], sender=row[1], recipient=row[2], resource_id=row[3], senders_reference=row[4],
            request=json.loads(row[5]), created=row[6], status=row[7], status_text=row[8], status_changed=row[9],
            published=row[10], read=row[11], history=history,  # type: ignore[arg-type]
            attachments=attachments, notifications=notifications,
        )

    def _attachment(self, row: tuple[Any, ...]) -> StoredAttachment:
        return StoredAttachment(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7], row[8],
                                self.attachment_path(row[0]))

    def _notifications(self, where: str, parameters: tuple[Any, ...]) -> list[RecordedNotification]:
        columns = ("id, correspondence_id, recipient, is_reminder, channel, template, email_subject, email_body, "
                   "sms_body, requested_send_time, created, sent, cancelled")
        query = f"SELECT {columns} FROM notification {where} ORDER BY rowid"  # noqa: S608 - fixed clauses, values bound
        rows = self._db.execute(query, parameters).fetchall()
        return [RecordedNotification(r[0], r[1], r[2], bool(r[3]), *r[4:]) for r in rows]

    def notifications(self, recipient: str | None = None, sent_only: bool = True) -> list[RecordedNotification]:
        """The notifications sent so far (oldest first), to `recipient` (bare orgnr) if given;
        with sent_only=False also those still waiting and those cancelled."""
        self.advance()
        clauses, parameters = [], []
        if recipient is not None:
            clauses.append("recipient = ?")
            parameters.append(recipient.removeprefix("0192:"))
        if sent_only:
            clauses.append("sent IS NOT NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            return self._notifications(where, tuple(parameters))

    def find(self, party: str, role: str, senders_reference: str | None = None, resource_id: str | None = None,
             status: str | None = None) -> list[str]:
        """Ids of correspondences `party` (bare orgnr) sent (role Sender), received (Recipient; published
        ones only), or either, oldest first."""
        self.advance()
        visible = "(recipient = ? AND published IS NOT NULL)"
        where = {"Sender": "sender = ?", "Recipient": visible}.get(role, f"(sender = ? OR {visible})")
        parameters: list[Any] = [party] * where.count("?")
        query = f"SELECT id FROM correspondence WHERE {where}"  # noqa: S608 - fixed clauses, values bound
        for column, value in (("senders_reference", senders_reference), ("resource_id", resource_id),
                              ("status", status)):
            if value:
                query += f" AND {column} = ?"
                parameters.append(value)
        with self._lock:
            return [row[0] for row in self._db.execute(query + " ORDER BY created, rowid", parameters)]

    def by_idempotent_key(self, sender: str, key: str) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute(
                "SELECT id FROM correspondence WHERE sender = ? AND idempotent_key = ? ORDER BY rowid", (sender, key)
            )]

    def summary(self) -> list[dict[str, Any]]:
        """Every correspondence in a line: for `/_sandbox/correspondences` and people looking."""
        self.advance()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, sender, recipient, resource_id, senders_reference, status, status_text, status_changed "
                "FROM correspondence ORDER BY created, rowid"
            ).fetchall()
        keys = ("correspondenceId", "sender", "recipient", "resourceId", "sendersReference", "status", "statusText",
                "statusChanged")
        return [dict(zip(keys, row, strict=True)) for row in rows]
