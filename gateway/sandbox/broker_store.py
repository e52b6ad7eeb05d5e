"""Where the sandbox broker keeps file transfers: metadata in SQLite (WAL), files beside it.

A restarted sandbox on the same data folder keeps every transfer and its state.
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
"""

STATUS_TEXTS = {
    "Initialized": "File transfer initialized. Waiting for upload.",
    "UploadStarted": "The upload has started.",
    "Published": "The file transfer has been published. Recipients can download it.",
    "AllConfirmedDownloaded": "All recipients have confirmed that they have downloaded the file.",
    "Failed": "The upload failed: the checksum did not match.",
    "DownloadStarted": "The recipient has started downloading the file.",
    "DownloadConfirmed": "The recipient has confirmed the download.",
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

    def overview(self) -> dict[str, Any]:
        """The FileTransferOverviewExt shape of the Altinn broker API."""
        return {
            "fileTransferId": self.id,
            "resourceId": self.resource_id,
            "fileName": self.file_name,
            "sendersFileTransferReference": self.senders_reference,
            "checksum": self.checksum,
            "useVirusScan": False,
            "fileTransferSize": self.size,
            "fileTransferStatus": self.status,
            "fileTransferStatusText": STATUS_TEXTS.get(self.status, self.status),
            "fileTransferStatusChanged": self.status_changed,
            "created": self.created,
            "expirationTime": self.expiration,
            "sender": self.sender,
            "recipients": [
                {
                    "recipient": recipient,
                    "currentRecipientFileTransferStatusCode": status,
                    "currentRecipientFileTransferStatusText": STATUS_TEXTS.get(status, status),
                    "currentRecipientFileTransferStatusChanged": changed,
                }
                for recipient, (status, changed) in sorted(self.recipients.items())
            ],
            "propertyList": self.property_list,
        }


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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def file_path(self, transfer_id: str) -> Path:
        return self.files / f"{transfer_id}.bin"

    def create(self, transfer: NewTransfer, checksum: str | None, now: datetime) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert_initialised(transfer, checksum, now)

    def create_published(self, transfer: NewTransfer, checksum: str, size: int, now: datetime) -> None:
        """A transfer initialised and uploaded in one request (its file already in place): both events count."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert_initialised(transfer, checksum, now)
            self._publish(transfer.id, size, checksum, transfer.senders_reference, now)

    def _insert_initialised(self, transfer: NewTransfer, checksum: str | None, now: datetime) -> None:
        stamp = now.isoformat()
        expiration = (now + FILE_TRANSFER_TIME_TO_LIVE).isoformat()
        self._db.execute(
            "INSERT INTO file_transfer VALUES (?,?,?,?,?,?,?,0,'Initialized',?,?,?)",
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

    def get(self, transfer_id: str) -> FileTransfer | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM file_transfer WHERE id = ?", (transfer_id,)).fetchone()
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
        )

    def set_status(self, transfer_id: str, status: str, now: datetime, expected: str | None = None) -> bool:
        """Move the transfer to `status`; with `expected`, only from that status. True if it moved."""
        with self._lock:
            query = "UPDATE file_transfer SET status = ?, status_changed = ? WHERE id = ?"
            parameters: tuple[Any, ...] = (status, now.isoformat(), transfer_id)
            if expected is not None:
                query += " AND status = ?"
                parameters += (expected,)
            return self._db.execute(query, parameters).rowcount == 1

    def publish(self, transfer_id: str, size: int, checksum: str, senders_reference: str | None,
                now: datetime) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._publish(transfer_id, size, checksum, senders_reference, now)

    def _publish(self, transfer_id: str, size: int, checksum: str, senders_reference: str | None,
                 now: datetime) -> None:
        stamp = now.isoformat()
        self._db.execute(
            "UPDATE file_transfer SET status = 'Published', status_changed = ?, size = ?, "
            "checksum = COALESCE(checksum, ?) WHERE id = ?",
            (stamp, size, checksum, transfer_id),
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

    def list_for_recipient(
        self, recipient: str, resource_id: str | None, status: str | None, recipient_status: str | None
    ) -> list[str]:
        query = (
            "SELECT f.id FROM file_transfer f JOIN recipient r ON r.transfer_id = f.id "
            "WHERE r.recipient = ?"
        )
        parameters: list[Any] = [recipient]
        for column, value in (("f.resource_id", resource_id), ("f.status", status),
                              ("r.status", recipient_status)):
            if value:
                query += f" AND {column} = ?"
                parameters.append(value)
        # As the Altinn API says: "Result is limited to 100 files. If your query returns more than 100
        # files, you will only receive the 100 last created."
        query += f" ORDER BY f.created DESC, f.rowid DESC LIMIT {LIST_LIMIT}"
        with self._lock:
            newest = [row[0] for row in self._db.execute(query, parameters)]
        return newest[::-1]  # oldest first

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
