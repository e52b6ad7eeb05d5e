"""Where the sandbox broker keeps file transfers: metadata in SQLite (WAL), files beside it.

A restarted sandbox on the same data folder keeps every transfer and its state. An uploaded file
waits in UploadProcessing (the virus scan) until its scan is due, then becomes Published, or Failed
when its scan was set to find something; the store moves due scans on whenever it is read, so no
thread is needed and a restart loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

FILE_TRANSFER_TIME_TO_LIVE = timedelta(days=30)
LIST_LIMIT = 100  # file transfers in one answer to GET /filetransfer

SCHEMA = """
CREATE TABLE IF NOT EXISTS file_transfer (
    id TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    senders_reference TEXT,
    sender TEXT NOT NULL,
    property_list TEXT NOT NULL,
    checksum TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    status_changed TEXT NOT NULL,
    created TEXT NOT NULL,
    expiration TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recipient (
    transfer_id TEXT NOT NULL REFERENCES file_transfer(id),
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    status_changed TEXT NOT NULL,
    PRIMARY KEY (transfer_id, recipient)
);
CREATE TABLE IF NOT EXISTS upload_event (
    transfer_id TEXT NOT NULL,
    senders_reference TEXT,
    size INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS initialise_event (
    transfer_id TEXT NOT NULL,
    senders_reference TEXT,
    at TEXT NOT NULL
);
-- Every poll lists by status or by recipient; without these it scans every transfer ever made
-- (3 ms a poll at 5000 transfers, 8 µs with them), and a sandbox keeps its transfers.
CREATE INDEX IF NOT EXISTS file_transfer_by_status ON file_transfer(status);
CREATE INDEX IF NOT EXISTS recipient_by_party ON recipient(recipient, status);
CREATE INDEX IF NOT EXISTS file_transfer_by_sender ON file_transfer(sender, resource_id);
"""
# Added with the virus scan; older sandbox folders get them on open.
SCAN_COLUMNS = {
    "status_text": "TEXT",  # the broker's detailed words for the status (a failure's reason)
    "scan_due": "REAL",  # epoch seconds when an upload's scan ends
    "scan_finding": "TEXT",  # what the scan finds (NULL: nothing), set when the upload is made
    "use_virus_scan": "INTEGER NOT NULL DEFAULT 0",
}

# The real broker's words for each status when it has no detailed ones.
STATUS_TEXTS = {
    "Initialized": "Ready for upload",
    "UploadStarted": "Upload started",
    "UploadProcessing": "Processing upload",
    "Published": "Ready for download",
    "Cancelled": "FileTransfer cancelled",
    "AllConfirmedDownloaded": "All downloaded",
    "Purged": "FileTransfer has been purged",
    "Failed": "Upload failed",
}
RECIPIENT_STATUS_TEXTS = {
    "Initialized": "Initialized",
    "DownloadStarted": "Recipient has attempted to download fileTransfer",
    "DownloadConfirmed": "Recipient has downloaded fileTransfer",
}


@dataclass(frozen=True)
class NewTransfer:
    """What initialising a file transfer records (the checksum comes with it or with the upload)."""

    id: str
    resource_id: str
    file_name: str
    senders_reference: str | None
    sender: str
    recipients: list[str]
    property_list: dict[str, str]

    @classmethod
    def from_request(cls, transfer_id: str, body: dict[str, Any]) -> NewTransfer:
        """From an initialise body (FileTransferInitalizeExt field names), already checked."""
        return cls(
            transfer_id, body["resourceId"], body["fileName"], body.get("sendersFileTransferReference"),
            body["sender"], body["recipients"], body.get("propertyList") or {},
        )


@dataclass(frozen=True)
class FileTransfer:
    id: str
    resource_id: str
    file_name: str
    senders_reference: str | None
    sender: str
    property_list: dict[str, str]
    checksum: str | None
    size: int
    status: str
    status_changed: str
    created: str
    expiration: str
    recipients: dict[str, tuple[str, str]]  # "0192:orgnr" -> (status, changed)
    status_text: str | None = None
    use_virus_scan: bool = False

    def overview(self) -> dict[str, Any]:
        """The FileTransferOverviewExt shape of the Altinn broker API."""
        return {
            "fileTransferId": self.id,
            "resourceId": self.resource_id,
            "fileName": self.file_name,
            "sendersFileTransferReference": self.senders_reference,
            "checksum": self.checksum,
            "useVirusScan": self.use_virus_scan,
            "fileTransferSize": self.size,
            "fileTransferStatus": self.status,
            "fileTransferStatusText": self.status_text or STATUS_TEXTS.get(self.status, self.status),
            "fileTransferStatusChanged": self.status_changed,
            "created": self.created,
            "expirationTime": self.expiration,
            "sender": self.sender,
            "recipients": [
                {
                    "recipient": recipient,
                    "currentRecipientFileTransferStatusCode": status,
                    "currentRecipientFileTransferStatusText": RECIPIENT_STATUS_TEXTS.get(status, status),
                    "currentRecipientFileTransferStatusChanged": changed,
                }
                for recipient, (status, changed) in sorted(self.recipients.items())
            ],
            "propertyList": self.property_list,
        }


@dataclass(frozen=True)
class Scan:
    """The virus scan an upload gets: how long it takes, and what it finds (None: nothing)."""

    delay_s: float
    finding: str | None = None


class BrokerStore:
    """Thread-safe: one connection guarded by a lock (the sandbox's load is small)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = folder / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(folder / "broker.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A sandbox must survive a killed process (WAL with NORMAL does), not a power cut: no fsync per
        # commit, so the event loop is not held up by the disk.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(file_transfer)")}
        for column, declaration in SCAN_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE file_transfer ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def file_path(self, transfer_id: str) -> Path:
        return self.files / f"{transfer_id}.bin"

    def create(self, transfer: NewTransfer, checksum: str | None, now: datetime) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert_initialised(transfer, checksum, now)

    def create_published(self, transfer: NewTransfer, checksum: str, size: int, now: datetime,
                         scan: Scan | None = None) -> None:
        """A transfer initialised and uploaded in one request (its file already in place): both events count."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert_initialised(transfer, checksum, now)
            self._publish(transfer.id, size, checksum, transfer.senders_reference, now, scan)

    def _insert_initialised(self, transfer: NewTransfer, checksum: str | None, now: datetime) -> None:
        stamp = now.isoformat()
        expiration = (now + FILE_TRANSFER_TIME_TO_LIVE).isoformat()
        self._db.execute(
            "INSERT INTO file_transfer (id, resource_id, file_name, senders_reference, sender, property_list, "
            "checksum, size, status, status_changed, created, expiration) VALUES (?,?,?,?,?,?,?,0,'Initialized',?,?,?)",
            (transfer.id, transfer.resource_id, transfer.file_name, transfer.senders_reference, transfer.sender,
             json.dumps(transfer.property_list), checksum, stamp, stamp, expiration),
        )
        self._db.executemany(
            "INSERT INTO recipient VALUES (?,?,'Initialized',?)",
            [(transfer.id, recipient, stamp) for recipient in dict.fromkeys(transfer.recipients)],
        )
        self._db.execute(
            "INSERT INTO initialise_event VALUES (?,?,?)", (transfer.id, transfer.senders_reference, stamp)
        )

    def advance_scans(self, now: datetime) -> None:
        """Finish every scan that is due: Published, or Failed with what it found."""
        with self._lock:
            self._advance_scans(now)

    def _advance_scans(self, now: datetime) -> None:
        self._db.execute(
            "UPDATE file_transfer SET "
            "status = CASE WHEN scan_finding IS NULL THEN 'Published' ELSE 'Failed' END, "
            "status_text = CASE WHEN scan_finding IS NULL THEN NULL ELSE "
            "'Malware scan failed: Malicious. Extra details: ' || scan_finding END, "
            "status_changed = ? WHERE status = 'UploadProcessing' AND scan_due <= ?",
            (now.isoformat(), now.timestamp()),
        )

    def get(self, transfer_id: str, now: datetime | None = None) -> FileTransfer | None:
        with self._lock:
            if now is not None:
                self._advance_scans(now)
            row = self._db.execute(
                "SELECT id, resource_id, file_name, senders_reference, sender, property_list, checksum, size, status, "
                "status_changed, created, expiration, status_text, use_virus_scan FROM file_transfer WHERE id = ?",
                (transfer_id,),
            ).fetchone()
            if row is None:
                return None
            recipients = {
                recipient: (status, changed)
                for recipient, status, changed in self._db.execute(
                    "SELECT recipient, status, status_changed FROM recipient WHERE transfer_id = ?",
                    (transfer_id,),
                )
            }
        return FileTransfer(
            id=row[0], resource_id=row[1], file_name=row[2], senders_reference=row[3], sender=row[4],
            property_list=json.loads(row[5]), checksum=row[6], size=row[7], status=row[8],
            status_changed=row[9], created=row[10], expiration=row[11], recipients=recipients,
            status_text=row[12], use_virus_scan=bool(row[13]),
        )

    def set_status(self, transfer_id: str, status: str, now: datetime, expected: str | None = None,
                   text: str | None = None) -> bool:
        """Move the transfer to `status` (with the broker's detailed `text`); with `expected`, only from
        that status. True if it moved."""
        with self._lock:
            query = "UPDATE file_transfer SET status = ?, status_changed = ?, status_text = ? WHERE id = ?"
            parameters: tuple[Any, ...] = (status, now.isoformat(), text, transfer_id)
            if expected is not None:
                query += " AND status = ?"
                parameters += (expected,)
            return self._db.execute(query, parameters).rowcount == 1

    def publish(self, transfer_id: str, size: int, checksum: str, senders_reference: str | None,
                now: datetime, scan: Scan | None = None) -> None:
        """The upload is complete: Published at once, or with `scan` UploadProcessing until it is due."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._publish(transfer_id, size, checksum, senders_reference, now, scan)

    def _publish(self, transfer_id: str, size: int, checksum: str, senders_reference: str | None,
                 now: datetime, scan: Scan | None) -> None:
        stamp = now.isoformat()
        status = "Published" if scan is None else "UploadProcessing"
        self._db.execute(
            "UPDATE file_transfer SET status = ?, status_changed = ?, size = ?, "
            "checksum = COALESCE(checksum, ?), scan_due = ?, scan_finding = ?, use_virus_scan = ? WHERE id = ?",
            (status, stamp, size, checksum, None if scan is None else now.timestamp() + scan.delay_s,
             None if scan is None else scan.finding, int(scan is not None), transfer_id),
        )
        self._db.execute(
            "INSERT INTO upload_event VALUES (?,?,?,?)", (transfer_id, senders_reference, size, stamp)
        )

    def set_recipient_status(self, transfer_id: str, recipient: str, status: str, now: datetime) -> None:
        stamp = now.isoformat()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE recipient SET status = ?, status_changed = ? WHERE transfer_id = ? AND recipient = ?",
                (status, stamp, transfer_id, recipient),
            )
            unconfirmed = self._db.execute(
                "SELECT COUNT(*) FROM recipient WHERE transfer_id = ? AND status != 'DownloadConfirmed'",
                (transfer_id,),
            ).fetchone()[0]
            if unconfirmed == 0:
                self._db.execute(
                    "UPDATE file_transfer SET status = 'AllConfirmedDownloaded', status_changed = ? "
                    "WHERE id = ? AND status = 'Published'",
                    (stamp, transfer_id),
                )

    def list_for(
        self, party: str, resource_id: str | None, status: str | None, recipient_status: str | None, now: datetime
    ) -> list[str]:
        """What GET /filetransfer answers `party`, as the real broker does: transfers it received or sent
        (by `recipient_status`: only received ones, in that state), the 100 newest first (by the time
        they reached `status` when it is given, else by creation)."""
        sort = "f.status_changed" if status else "f.created"
        filters, parameters = "", []
        for column, value in (("f.resource_id", resource_id), ("f.status", status)):
            if value:
                filters += f" AND {column} = ?"
                parameters.append(value)
        # Only fixed column names are formatted in; every value is a parameter.
        received = (f"SELECT f.id, {sort}, f.rowid FROM file_transfer f JOIN recipient r ON r.transfer_id = f.id "  # noqa: S608
                    f"WHERE r.recipient = ?{filters}")
        query_parameters: list[Any] = [party, *parameters]
        if recipient_status:
            received += " AND r.status = ?"
            query_parameters.append(recipient_status)
            query = received
        else:
            query = f"{received} UNION SELECT f.id, {sort}, f.rowid FROM file_transfer f WHERE f.sender = ?{filters}"  # noqa: S608
            query_parameters += [party, *parameters]
        query += f" ORDER BY 2 DESC, 3 DESC LIMIT {LIST_LIMIT}"
        with self._lock:
            self._advance_scans(now)
            return [row[0] for row in self._db.execute(query, query_parameters)]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            uploads = dict(self._db.execute(
                "SELECT COALESCE(senders_reference, ''), COUNT(*) FROM upload_event GROUP BY 1"
            ).fetchall())
            initialised = dict(self._db.execute(
                "SELECT COALESCE(senders_reference, ''), COUNT(*) FROM initialise_event GROUP BY 1"
            ).fetchall())
            # Status messages reuse the messageId they are about: count per sender to tell them apart.
            by_sender = dict(self._db.execute(
                "SELECT f.sender || '/' || COALESCE(u.senders_reference, ''), COUNT(*) "
                "FROM upload_event u JOIN file_transfer f ON f.id = u.transfer_id GROUP BY 1"
            ).fetchall())
            total_bytes = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM upload_event").fetchone()[0]
            by_status = dict(self._db.execute(
                "SELECT status, COUNT(*) FROM file_transfer GROUP BY status"
            ).fetchall())
        return {
            "uploadsByReference": uploads,
            "initialisedByReference": initialised,
            "uploadsBySenderAndReference": by_sender,
            "totalUploads": sum(uploads.values()),
            "totalInitialised": sum(initialised.values()),
            "totalUploadedBytes": total_bytes,
            "fileTransfersByStatus": by_status,
        }
