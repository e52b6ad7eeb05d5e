"""Schema migrations, applied in order, the same on both engines: written for SQLite, whose PRAGMA user_version
holds how many have run; PostgreSQL runs each as postgresql_script() gives it, and keeps the count in
journal_schema."""

from __future__ import annotations

import re
import sqlite3

from gateway.errors import JournalError

MIGRATIONS: list[str] = [
    # 1: messages and their status events
    """
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        direction       TEXT NOT NULL CHECK (direction IN ('out', 'in')),
        message_id      TEXT NOT NULL,
        conversation_id TEXT,
        claim_id        TEXT UNIQUE,
        drop_name       TEXT,
        status_name     TEXT NOT NULL UNIQUE,
        phase           TEXT NOT NULL,
        sender          TEXT,
        receiver        TEXT,
        message_type    TEXT,
        process         TEXT,
        client_reference TEXT,
        channel         TEXT,
        route_reason    TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        deadline        TEXT,
        deadline_epoch  REAL,
        errors          TEXT NOT NULL DEFAULT '[]',
        detail          TEXT NOT NULL DEFAULT '{}',
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        finished_at     REAL,
        status_dirty    INTEGER NOT NULL DEFAULT 1
    );
    CREATE UNIQUE INDEX messages_live_id ON messages (direction, message_id) WHERE phase != 'rejected';
    CREATE INDEX messages_phase_due ON messages (phase, next_attempt_at);
    CREATE INDEX messages_open_deadline ON messages (deadline_epoch) WHERE finished_at IS NULL;
    CREATE INDEX messages_dirty ON messages (status_dirty) WHERE status_dirty > 0;
    CREATE INDEX messages_finished ON messages (finished_at) WHERE finished_at IS NOT NULL;
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        message     INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        status      TEXT NOT NULL,
        at          TEXT NOT NULL,
        description TEXT,
        UNIQUE (message, status)
    );
    """,
    # 2: status messages we owe senders of received messages (MOTTATT, LEVERT), until they are sent
    """
    CREATE TABLE status_sends (
        message INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        status  TEXT NOT NULL,
        due_at  REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (message, status)
    );
    CREATE INDEX status_sends_due ON status_sends (due_at);
    """,
    # 3: when we learned each status (`at` is when its reporter says it happened); cursors of the
    # jobs that walk the journal in batches (status polling per channel)
    """
    ALTER TABLE events ADD COLUMN learned_at TEXT;
    CREATE TABLE cursors (
        name     TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    );
    CREATE INDEX messages_open_channel ON messages (channel, phase, id);
    """,
    # 4: when each sent message's status is next asked for (status polling backs off for messages whose
    # status has stood still; NULL: never again). Messages sent before are due at once.
    """
    ALTER TABLE messages ADD COLUMN next_poll_at REAL;
    UPDATE messages SET next_poll_at = 0 WHERE direction = 'out' AND phase IN ('sent', 'delivered', 'expired')
        AND json_extract(detail, '$.reference') IS NOT NULL;
    CREATE INDEX messages_poll_due ON messages (channel, phase, next_poll_at) WHERE next_poll_at IS NOT NULL;
    """,
    # 5: the originals of sent messages, kept apart from their message rows (which retention may purge
    # sooner): waiting in the work area (filed_at NULL) until they are in sent/ as sent_name, then kept
    # there counting from sent_at. A claim_id of NULL: an entry found in sent/ with no row (from before 5).
    """
    CREATE TABLE sent_originals (
        id         INTEGER PRIMARY KEY,
        claim_id   TEXT UNIQUE,
        message_id TEXT,
        drop_name  TEXT NOT NULL,
        sent_at    REAL NOT NULL,
        sent_name  TEXT UNIQUE,
        filed_at   REAL
    );
    CREATE INDEX sent_originals_waiting ON sent_originals (id) WHERE filed_at IS NULL;
    CREATE INDEX sent_originals_sent_at ON sent_originals (sent_at) WHERE filed_at IS NOT NULL;
    """,
    # 6: incoming transfers whose documents could not be written (not for want of space), counted so that
    # one is quarantined after a few tries instead of being downloaded again at every poll
    """
    CREATE TABLE transfer_failures (
        channel    TEXT NOT NULL,
        reference  TEXT NOT NULL,
        failures   INTEGER NOT NULL,
        last_error TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (channel, reference)
    );
    """,
    # 7: the nodes that share the journal (a name each, a heartbeat; the run that holds the name now), and claims
    # on work with a lease and a fencing token that only grows, so a node that slept past its lease cannot write
    # over the node that took the work over
    """
    CREATE TABLE nodes (
        name         TEXT PRIMARY KEY,
        instance     TEXT NOT NULL,
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        started_at   REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        stopped_at   REAL
    );
    CREATE TABLE claims (
        work       TEXT PRIMARY KEY,
        node       TEXT,
        token      INTEGER NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 8 (channel_receipts): receipts a channel has taken from its network, and marked read there, before they
    # are applied to their message: kept here first, so a crash in between loses none (DPI's receipts).
    # `handed`: given to the status poller once; the row goes when its letter is asked about again.
    """
    CREATE TABLE channel_receipts (
        channel     TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        receipt_key TEXT NOT NULL,
        body        TEXT NOT NULL,
        taken_at    REAL NOT NULL,
        handed      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (channel, message_id, receipt_key)
    );
    CREATE INDEX channel_receipts_taken ON channel_receipts (channel, taken_at);
    """,
    # 9: transfers a channel's listing found waiting, where nodes share the journal: one node lists, and every node
    # claims and takes them one by one (journal/item_claims.py); `listed_at`: when a listing last saw it; `done_at`:
    # when it was taken (kept a while, so a listing made just before the take does not bring it back)
    """
    CREATE TABLE inbound_takes (
        channel   TEXT NOT NULL,
        reference TEXT NOT NULL,
        listed_at REAL NOT NULL,
        done_at   REAL,
        PRIMARY KEY (channel, reference)
    );
    CREATE INDEX inbound_takes_listed ON inbound_takes (channel, listed_at);
    """,
]


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version reached."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise too_new(version)
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


# SQLite's types as PostgreSQL needs them: a rowid key becomes an identity column, REAL (SQLite's 8-byte float;
# PostgreSQL's REAL has 4 bytes) DOUBLE PRECISION, and every INTEGER a BIGINT, so that the keys that reference
# the messages' ids are as wide as they are.
_POSTGRESQL_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)
_JSON_KEY = re.compile(r"json_extract\((\w+), '\$\.(\w+)'\)")


def json_key_for_postgresql(sql: str) -> str:
    """`json_extract(column, '$.key')` of the journal's SQL as PostgreSQL says it (the JSON columns are text)."""
    return _JSON_KEY.sub(r"(\1::jsonb ->> '\2')", sql)


def postgresql_script(script: str) -> list[str]:
    """The statements of one migration as PostgreSQL runs them."""
    for pattern, replacement in _POSTGRESQL_TYPES:
        script = pattern.sub(replacement, script)
    return [statement for statement in json_key_for_postgresql(script).split(";") if statement.strip()]


def too_new(version: int) -> JournalError:
    return JournalError(
        f"the journal has schema version {version}, newer than this efm-gateway knows "
        f"({len(MIGRATIONS)}); run the newer efm-gateway or restore a backup"
    )
