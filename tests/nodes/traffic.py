"""Traffic both ways for the nodes of organisation A on the shared folder tree: forsendelser dropped into the shared
outbox for a municipality (DPF, through the sandbox's SvarUt), and as many sent by that municipality to A (through
SvarInn); the archive system takes them out of the shared inbox. `check_each_once()` asserts what the archive
system and the municipality would see when nothing was lost or doubled."""

from __future__ import annotations

import collections
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.dpo.network import A, SandboxProcess
from tests.nodes.support import ArchiveSystem, FinalStatuses, drop_messages
from tests.postgres import PostgresDatabase

MUNICIPALITY = "944444408"
# Short intervals: the counts, not the waits between polls, make the run's length. A machine shared with other
# work can starve a node for half a minute; its watchdog's ERROR would then fail a run that lost nothing.
NODE_SETTINGS = {"channels": {"dpf": {"inbound_poll_seconds": 0.3, "status_poll_seconds": 0.5}},
                 "ops": {"heartbeat_grace_seconds": 600}}


def message_ids(rng: random.Random, count: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


class Traffic:
    """`count` messages out and `count` in, their ids drawn from `rng` (a seeded run draws the same ones)."""

    def __init__(self, root: Path, sandbox: SandboxProcess, rng: random.Random, count: int,
                 database: PostgresDatabase | None = None) -> None:
        """`database`: the nodes' journal, read to say where a message that is short stands."""
        self.sandbox = sandbox
        self.database = database
        self.share = root / "share"
        self.count = count
        self.outgoing, self.incoming = message_ids(rng, count), message_ids(rng, count)
        self.archive = ArchiveSystem(self.share / "inbox")
        status = self.share / "status"
        self.out_final = FinalStatuses(status, {f"m{i:04d}.{m}.xml": "LEST" for i, m in enumerate(self.outgoing)})
        self.in_final = FinalStatuses(status, {f"in.{m}.xml": "INNKOMMENDE_LEVERT" for m in self.incoming})
        self._producers = [
            threading.Thread(target=drop_messages,
                             args=(self.share / "outbox", root / "staging", MUNICIPALITY, self.outgoing)),
            threading.Thread(target=self._municipality_sends),
        ]
        self.summary: list[dict] = []

    def start(self) -> Traffic:
        self.archive.start()
        for producer in self._producers:
            producer.start()
        return self

    def progress(self) -> tuple[int, int]:
        """(outgoing at their final status, incoming taken by the archive system)."""
        return self.out_final.count(), len(self.archive.seen())

    def wait_until_done(self, stall_seconds: float = 180) -> None:
        """Until both producers finished, every message was taken or reached LEST, and every incoming status
        file its end. However long that takes while it moves (a loaded machine is slow, not wrong); it fails
        once nothing moved for `stall_seconds` (longer than a claim's lease: a killed node's work waits that
        long for another node)."""
        for producer in self._producers:
            producer.join()
        incoming = set(self.incoming)
        _wait_moving(lambda: len(self.archive.seen() & incoming), self.count, stall_seconds,
                     "incoming messages taken by the archive system", lambda: sorted(incoming - self.archive.seen()))
        for final in (self.out_final, self.in_final):
            _wait_moving(final.count, self.count, stall_seconds, "status files at their final status",
                         lambda final=final: self._where([*final.missing().items()][:5]))

    def _where(self, short: list[tuple[str, str | None]]) -> list:
        """Each short status file with its status, and its message's row and claim in the journal."""
        if self.database is None:
            return short
        query = ("SELECT m.phase, m.status_dirty, m.attempts, m.next_attempt_at, m.errors, c.node, c.token, "
                 "c.expires_at, extract(epoch from now()) FROM messages m "
                 "LEFT JOIN claims c ON c.work = 'send:' || m.id WHERE m.status_name = %s")
        with self.database.connect() as connection:
            return [(name, status, connection.execute(query, (name,)).fetchall()) for name, status in short]

    def read_svarut(self) -> None:
        """What SvarUt holds, for check_each_once(): read once the run is done, before the sandbox stops."""
        self.summary = httpx.get(f"{self.sandbox.url}/svarut/_sandbox/forsendelser", timeout=60).json()

    def stop(self) -> None:
        for producer in self._producers:
            if producer.is_alive():
                producer.join()
        self.archive.stop()

    def check_each_once(self, context: str = "") -> None:
        """SvarUt holds one forsendelse per outgoing messageId; every incoming one was acknowledged and reached the
        archive system once (no inbox folder written twice); every status file on the share is one of these
        messages' and at its final status; nothing is left in the outbox."""
        assert self.archive.twice() == {}, f"incoming messages in the archive more than once{context}"
        assert self.archive.seen() == set(self.incoming)
        sent = collections.Counter(f["eksternReferanse"] for f in self.summary if f["sender"] == A)
        assert {m: sent[m] for m in self.outgoing if sent[m] != 1} == {}, f"one forsendelse per message{context}"
        received = [f for f in self.summary if f["sender"] == MUNICIPALITY and f["receiver"] == A]
        assert sorted(f["eksternReferanse"] for f in received) == sorted(self.incoming)
        assert [f["eksternReferanse"] for f in received if f["status"] != "LEST"] == [], "each acknowledged"
        # The archive system's view: every name not starting with "." (the gateway's temporary files do).
        present = {name for name in os.listdir(self.share / "status") if not name.startswith(".")}
        expected = {*self.out_final.expected, *self.in_final.expected}
        assert present == expected, f"status files no message has: {sorted(present - expected)[:5]}; " \
                                    f"messages without one: {sorted(expected - present)[:5]}"
        assert self.out_final.missing() == {} and self.in_final.missing() == {}  # each file read again, whole
        assert [p.name for p in (self.share / "outbox").iterdir() if not p.name.startswith(".")] == []

    def leftover_temporary_files(self) -> list[str]:
        """Temporary files in the status folder: what writers killed between write and rename left there."""
        return sorted(name for name in os.listdir(self.share / "status") if name.startswith("."))

    def _municipality_sends(self) -> None:
        with httpx.Client(timeout=60) as http:
            for index, message_id in enumerate(self.incoming):
                http.post(f"{self.sandbox.url}/svarut/_sandbox/send", json={
                    "sender": MUNICIPALITY, "receiver": A, "title": f"Svar {index}", "messageId": message_id,
                    "conversationId": str(uuid.uuid4())}).raise_for_status()


def _wait_moving(count: Callable[[], int], target: int, stall_seconds: float, what: str,
                 short: Callable[[], list]) -> None:
    """Until count() reaches target; AssertionError (naming some of what is short) when it stood still for
    `stall_seconds`."""
    last, moved_at = -1, time.monotonic()
    while (now := count()) < target:
        if now != last:
            last, moved_at = now, time.monotonic()
        elif time.monotonic() - moved_at > stall_seconds:
            missing = short()
            raise AssertionError(f"{what}: {now} of {target}, and none more for {stall_seconds:.0f} s; "
                                 f"{len(missing)} short, among them {missing[:5]}")
        time.sleep(1)
