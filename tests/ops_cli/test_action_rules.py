"""The rules of retry and cancel that a run does not reach by itself: a message the running daemon may be
sending is not cancelled; a failed message is retried only when that cannot send it twice or past
its deadline; a command of another schema version than the journal's changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.drops.claims import new_claim_id
from gateway.journal.lock import InstanceLock
from gateway.journal.migrations import MIGRATIONS
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from tests.foundation.drops import write_config
from tests.suite_journal import set_schema_version

from .support import cli, record_of

NOW = datetime.now(UTC)


@pytest.fixture
def setting(tmp_path: Path):
    config = write_config(tmp_path)
    # A network in config (nothing listens there; no daemon is started): the daemon would be sending.
    config.write_text(config.read_text() + (
        "network:\n  service_registry_url: http://127.0.0.1:9/sr\n  token_url: http://127.0.0.1:9/token\n"
        "  altinn_exchange_url: http://127.0.0.1:9/authentication/api/v1/exchange/maskinporten\n"
        "channels:\n  dpo:\n    broker_url: http://127.0.0.1:9/broker\n"
    ))
    var = tmp_path / "var"
    for name in ("outbox", "status", "inbox", "failed", "sent", "state/work"):
        (var / name).mkdir(parents=True)
    journal = Journal(var / "state" / "journal.sqlite", FakeClock(NOW))
    yield config, var, journal
    journal.close()


def _accepted(journal: Journal, var: Path, drop: str, *, deadline_hours: float = 24) -> int:
    claim_id = new_claim_id("folder", drop)
    (var / "state" / "work" / claim_id).mkdir()
    (var / "state" / "work" / claim_id / "message.xml").write_text("<message/>")
    message_id = str(uuid.uuid4())
    record = journal.create(direction="out", message_id=message_id, status_name=f"{drop}.{message_id}.xml",
                            phase=Phase.ACCEPTED, claim_id=claim_id, drop_name=drop, receiver="910075918",
                            deadline=NOW + timedelta(hours=deadline_hours))
    journal.add_event(record.row, Status.OPPRETTET, description="the drop was accepted")
    return record.row


def test_a_message_due_now_is_not_cancelled_while_a_daemon_runs(setting):
    config, var, journal = setting
    _accepted(journal, var, "nettopp-tatt")
    lock = InstanceLock(var / "state" / "efm-gateway.lock")
    lock.acquire()  # as a running daemon holds it
    try:
        refused = cli(config, "cancel", "nettopp-tatt")
    finally:
        lock.release()
    assert refused.returncode == 4  # refused
    assert "is due now, so the running daemon may be sending it" in refused.stderr
    assert record_of(var / "state" / "journal.sqlite", "nettopp-tatt").phase == "accepted"
    assert not list((var / "failed").iterdir())

    # With no daemon running, nothing is sending it: cancelled, and its drop parked with the reason.
    cancelled = cli(config, "cancel", "nettopp-tatt")
    assert cancelled.returncode == 0, cancelled.stderr
    record = record_of(var / "state" / "journal.sqlite", "nettopp-tatt")
    assert record.phase == "failed" and "cancelled by the operator" in record.errors
    assert sorted(path.name for path in (var / "failed").iterdir()) == ["nettopp-tatt", "nettopp-tatt.error.txt"]
    assert list((var / "state" / "work").iterdir()) == []
    assert [event.status for event in journal.events(record.row)] == ["OPPRETTET", "FEIL"]


def _failed(journal: Journal, row: int, problem: str, *, sent: bool = False) -> None:
    if sent:
        journal.move(row, Phase.SENDING)
        journal.move(row, Phase.SENT)
        journal.add_event(row, Status.SENDT)
    journal.move(row, Phase.FAILED, errors=[problem])
    journal.add_event(row, Status.FEIL, description=problem)


def test_a_failed_message_is_retried_only_when_that_is_safe(setting):
    config, var, journal = setting
    _failed(journal, _accepted(journal, var, "sendt-og-feilet"), "the receiver answered ERROR", sent=True)
    _failed(journal, _accepted(journal, var, "for-sent", deadline_hours=-1), "HTTP 400")
    _failed(journal, _accepted(journal, var, "borte"), "HTTP 400")
    for path in (var / "state" / "work").iterdir():
        path.rename(var / "failed" / path.name)  # as the daemon parks failed drops (without their explanation)
    for drop, words in (
        ("sendt-og-feilet", "was sent, and then failed (the receiver answered ERROR): the receiver has it under "
                            "this messageId"),
        ("for-sent", "deadline passed at"),
        ("borte", "are no longer in"),
    ):
        refused = cli(config, "retry", drop)
        assert refused.returncode == 4 and words in refused.stderr, (drop, refused.stderr)
        assert record_of(var / "state" / "journal.sqlite", drop).phase == "failed"


def test_a_command_of_another_schema_version_changes_nothing(setting):
    config, var, journal = setting
    row = _accepted(journal, var, "venter")
    set_schema_version(var / "state" / "journal.sqlite", 2)  # an older schema than this code's
    refused = cli(config, "cancel", "venter")
    assert refused.returncode == 2
    assert f"has schema version 2, but this efm-gateway expects {len(MIGRATIONS)}" in refused.stderr
    assert journal.get(row).phase == "accepted"
    status = cli(config, "status")
    assert status.returncode == 2 and "older than this efm-gateway's" in status.stderr
