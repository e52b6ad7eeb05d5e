"""Messages past their deadline get LEVETID_UTLOPT; old sent originals and finished journal rows are purged."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lxml import etree

from gateway.clock import FakeClock, isoformat
from gateway.contract.status import NAMESPACE as STATUS_NS
from gateway.contract.status import schema as status_schema
from gateway.contract.statuses import Status
from gateway.intake.service import expire_overdue
from gateway.jobs.retention import purge_journal, purge_sent, run_retention
from gateway.journal import originals
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from tests.suite_journal import journal_rows

from .drops import make_flat_drop, make_folder_drop, pdf_bytes, sidecar_xml

NS = {"s": STATUS_NS}
DAY = 86400.0


def _status_root(path: Path) -> etree._Element:
    tree = etree.parse(str(path))
    assert status_schema().validate(tree), status_schema().error_log
    return tree.getroot()


def _history(root: etree._Element) -> list[str]:
    return [e.findtext("s:value", namespaces=NS) for e in root.findall("s:history/s:status", NS)]


def _drop_with_deadline(h, name: str, deadline: datetime | None, flat: bool = False):
    extra = f"<deadline>{isoformat(deadline)}</deadline>" if deadline else ""
    if flat:
        sidecar = sidecar_xml(documents=[{"file": f"{name}.pdf", "main": True}], extra=extra)
        make_flat_drop(h.outbox, name, sidecar=sidecar)
    else:
        make_folder_drop(h.outbox, name, sidecar=sidecar_xml(extra=extra))


def _record(h, drop_name: str):
    [record] = [r for r in h.journal.listing() if r.drop_name == drop_name]
    return record


def _work_entries(h) -> list[str]:
    return sorted(os.listdir(h.config.folders.work_area))


# ---- expiry ---------------------------------------------------------------------------------------


def test_an_accepted_drop_past_its_deadline_expires_and_goes_to_failed(harness):
    h = harness(quiet_period_seconds=0)
    _drop_with_deadline(h, "kort-frist", h.clock.now() + timedelta(hours=1))
    h.run()
    record = _record(h, "kort-frist")
    assert record.phase == Phase.ACCEPTED
    assert len(_work_entries(h)) == 1

    h.clock.advance(2 * 3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1
    h.statuses.flush()

    record = h.journal.get(record.row)
    assert record.phase == Phase.EXPIRED
    assert record.finished_at is not None
    root = _status_root(h.status / record.status_name)
    assert root.findtext("s:current", namespaces=NS) == "LEVETID_UTLOPT"
    assert _history(root) == ["OPPRETTET", "LEVETID_UTLOPT"]
    assert any("deadline passed" in e.text for e in root.findall("s:errors/s:error", NS))

    # The drop leaves the work area for failed/, untouched, with an explanation beside it.
    assert _work_entries(h) == []
    assert sorted(os.listdir(h.failed)) == ["kort-frist", "kort-frist.error.txt"]
    assert (h.failed / "kort-frist" / "brev.pdf").read_bytes() == pdf_bytes("kort-frist")
    assert (h.failed / "kort-frist" / "message.xml").exists()
    explanation = (h.failed / "kort-frist.error.txt").read_text()
    assert "did not send this message" in explanation
    assert record.message_id in explanation
    assert "deadline passed" in explanation
    assert "later <deadline>" in explanation


def test_an_expired_flat_drop_goes_to_failed_with_its_documents(harness):
    h = harness(quiet_period_seconds=0)
    _drop_with_deadline(h, "flat-frist", h.clock.now() + timedelta(minutes=10), flat=True)
    h.run()
    h.clock.advance(3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1
    assert _work_entries(h) == []
    parked = h.failed / "flat-frist"
    assert sorted(os.listdir(parked)) == ["flat-frist.pdf", "flat-frist.xml"]
    assert (h.failed / "flat-frist.error.txt").exists()


def test_a_message_before_its_deadline_is_left_alone(harness):
    h = harness(quiet_period_seconds=0)
    _drop_with_deadline(h, "kort-frist", h.clock.now() + timedelta(hours=1))
    _drop_with_deadline(h, "standard", None)  # default lifetime: 24 hours
    h.run()
    h.clock.advance(2 * 3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1
    h.statuses.flush()

    standard = _record(h, "standard")
    assert standard.phase == Phase.ACCEPTED
    assert standard.finished_at is None
    root = _status_root(h.status / standard.status_name)
    assert _history(root) == ["OPPRETTET"]
    assert any(entry.endswith("~d~standard") for entry in _work_entries(h))
    assert not (h.failed / "standard").exists()

    # Exactly at the deadline is not past it; a moment later it is.
    h.clock.advance(22 * 3600 - 1)
    assert expire_overdue(h.journal, h.intake, h.clock) == 0
    h.clock.advance(2)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1


def _sent_message(h, events: list[Status], deadline_in: timedelta = timedelta(hours=1)):
    """An outgoing message that went out through the journal's own steps, with the given receipts."""
    message_id = str(uuid.uuid4())
    record = h.journal.create(
        direction="out",
        message_id=message_id,
        status_name=f"manual.{message_id}.xml",
        phase=Phase.ACCEPTED,
        deadline=h.clock.now() + deadline_in,
        drop_name="manual",
    )
    h.journal.add_event(record.row, Status.OPPRETTET)
    h.journal.move(record.row, Phase.SENDING)
    h.journal.move(record.row, Phase.SENT, channel="DPO", route_reason="test")
    for offset, status in enumerate([Status.SENDT, *events], start=1):
        h.journal.add_event(record.row, status, at=h.clock.now() + timedelta(seconds=offset))
    return record


def test_a_delivered_message_never_expires(harness):
    h = harness(quiet_period_seconds=0)
    delivered = _sent_message(h, [Status.MOTTATT, Status.LEVERT])
    h.statuses.flush()
    h.clock.advance(3 * DAY)
    assert expire_overdue(h.journal, h.intake, h.clock) == 0
    h.statuses.flush()
    assert h.journal.get(delivered.row).phase == Phase.SENT
    assert not h.journal.has_event(delivered.row, Status.LEVETID_UTLOPT)
    root = _status_root(h.status / delivered.status_name)
    assert root.findtext("s:current", namespaces=NS) == "LEVERT"


def test_a_sent_message_that_was_only_received_expires_without_touching_folders(harness):
    h = harness(quiet_period_seconds=0)
    received_only = _sent_message(h, [Status.MOTTATT])
    h.clock.advance(2 * 3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1
    h.statuses.flush()
    assert h.journal.get(received_only.row).phase == Phase.EXPIRED
    root = _status_root(h.status / received_only.status_name)
    assert root.findtext("s:current", namespaces=NS) == "LEVETID_UTLOPT"
    assert _history(root) == ["OPPRETTET", "SENDT", "MOTTATT", "LEVETID_UTLOPT"]
    assert os.listdir(h.failed) == []


def test_finished_messages_are_not_expired(harness):
    h = harness(quiet_period_seconds=0)
    make_folder_drop(h.outbox, "ugyldig", sidecar=sidecar_xml(receiver="910075919"))
    h.run()
    rejected = _record(h, "ugyldig")
    assert rejected.phase == Phase.REJECTED
    h.clock.advance(30 * DAY)
    assert expire_overdue(h.journal, h.intake, h.clock) == 0
    assert not h.journal.has_event(rejected.row, Status.LEVETID_UTLOPT)


def test_expiring_twice_is_harmless(harness):
    h = harness(quiet_period_seconds=0)
    _drop_with_deadline(h, "kort-frist", h.clock.now() + timedelta(hours=1))
    h.run()
    h.clock.advance(2 * 3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1
    h.statuses.flush()
    record = _record(h, "kort-frist")
    status_before = (h.status / record.status_name).read_bytes()
    failed_before = sorted(os.listdir(h.failed))

    h.clock.advance(3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 0
    assert h.statuses.flush() == 0
    assert (h.status / record.status_name).read_bytes() == status_before
    assert sorted(os.listdir(h.failed)) == failed_before
    assert [e.status for e in h.journal.events(record.row)] == [Status.OPPRETTET, Status.LEVETID_UTLOPT]


def _sending_past_its_deadline(h, name: str, reference: str | None):
    _drop_with_deadline(h, name, h.clock.now() + timedelta(hours=1))
    h.run()
    record = _record(h, name)
    # What the sender does: SENDING (with the transfer's reference) before the upload; a retryable
    # failure leaves it there, due at the deadline.
    detail = {**record.detail, **({"reference": reference} if reference else {})}
    h.journal.move(record.row, Phase.SENDING, channel="DPO", detail=detail)
    h.journal.update(record.row, attempts=5, next_attempt_at=record.deadline.timestamp())
    h.clock.advance(2 * 3600)
    return h.journal.get(record.row)


class _Channel:
    name = "DPO"

    def __init__(self, uploaded: bool) -> None:
        self.uploaded = uploaded
        self.sent: list[str] = []

    def already_sent(self, reference: str) -> bool:
        return self.uploaded

    def send(self, package, reference, on_reference):  # must never be called for an expired message
        self.sent.append(package.message_id)
        return "new-transfer"


def _sender(h, channel):
    from gateway.outbound.sender import Sender

    return Sender(h.config, h.journal, h.statuses, h.clock, registry=None, channels={"DPO": channel})


def test_the_sweep_leaves_a_message_in_sending_to_the_sender(harness):
    h = harness(quiet_period_seconds=0)
    record = _sending_past_its_deadline(h, "nettverk-nede", reference="transfer-1")
    assert expire_overdue(h.journal, h.intake, h.clock) == 0
    assert h.journal.get(record.row).phase == Phase.SENDING


def test_the_sender_expires_a_message_whose_upload_never_finished_and_parks_its_drop(harness):
    h = harness(quiet_period_seconds=0)
    record = _sending_past_its_deadline(h, "nettverk-nede", reference="transfer-1")
    channel = _Channel(uploaded=False)
    sender = _sender(h, channel)
    try:
        sender.send_one(record)
    finally:
        sender.close()
    assert channel.sent == [], "an expired message is never handed on"
    assert h.journal.get(record.row).phase == Phase.EXPIRED
    assert Status.LEVETID_UTLOPT in [e.status for e in h.journal.events(record.row)]
    assert _work_entries(h) == []
    assert sorted(os.listdir(h.failed)) == ["nettverk-nede", "nettverk-nede.error.txt"]


def test_a_message_whose_upload_finished_before_a_crash_is_sent_not_expired(harness):
    h = harness(quiet_period_seconds=0)
    record = _sending_past_its_deadline(h, "lastet-opp", reference="transfer-1")
    channel = _Channel(uploaded=True)
    sender = _sender(h, channel)
    try:
        sender.send_one(record)
    finally:
        sender.close()
    assert channel.sent == []
    assert h.journal.get(record.row).phase == Phase.SENT
    statuses = [e.status for e in h.journal.events(record.row)]
    assert Status.SENDT in statuses and Status.LEVETID_UTLOPT not in statuses
    assert os.listdir(h.failed) == []
    assert sorted(os.listdir(h.config.folders.sent)) == ["lastet-opp"]


def test_an_expired_drop_left_in_the_work_area_by_a_crash_is_parked_at_restart(harness):
    h = harness(quiet_period_seconds=0)
    _drop_with_deadline(h, "kort-frist", h.clock.now() + timedelta(hours=1))
    h.run()
    record = _record(h, "kort-frist")
    h.clock.advance(2 * 3600)
    # The crash came after the journal commit and before the move to failed/.
    with h.journal.transaction():
        h.journal.move(record.row, Phase.EXPIRED, errors=["the deadline passed before the message was delivered"])
        h.journal.add_event(record.row, Status.LEVETID_UTLOPT, description="the deadline passed")
    assert len(_work_entries(h)) == 1
    h.intake.recover()
    assert _work_entries(h) == []
    assert sorted(os.listdir(h.failed)) == ["kort-frist", "kort-frist.error.txt"]
    assert "did not send this message" in (h.failed / "kort-frist.error.txt").read_text()


# ---- retention ------------------------------------------------------------------------------------


def _age(path: Path, now: datetime, days: float) -> None:
    moment = now.timestamp() - days * DAY
    os.utime(path, (moment, moment), follow_symlinks=False)


def test_purge_sent_goes_by_when_each_entry_was_sent_never_by_its_mtime(tmp_path):
    clock = FakeClock(datetime.now(UTC))
    journal = Journal(tmp_path / "journal.sqlite", clock)
    sent, work = tmp_path / "sent", tmp_path / "work"
    sent.mkdir()
    work.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep-me.pdf").write_bytes(b"not ours")
    try:
        # Sent through the journal: kept for keep_days from when it was sent.
        (work / "claim-1").mkdir()
        (work / "claim-1" / "brev.pdf").write_bytes(b"x")
        _age(work / "claim-1", clock.now(), 400)  # copied with cp -a from a year-old folder
        originals.note_sent(journal, "claim-1", str(uuid.uuid4()), "brev", clock.now().timestamp())
        assert originals.file_away(journal, "claim-1", work, sent, clock.now().timestamp())
        # Found in sent/ with no row (sent before the journal kept sent times): kept for keep_days from now.
        (sent / "old-folder").mkdir()
        (sent / "old-file.pdf").write_bytes(b"x")
        (sent / "old-link").symlink_to(outside, target_is_directory=True)
        for name in ("old-folder", "old-file.pdf", "old-link"):
            _age(sent / name, clock.now(), 100)

        assert purge_sent(journal, sent, clock, keep_days=30) == 0
        clock.advance(29 * DAY)
        (sent / "later.pdf").write_bytes(b"x")
        assert purge_sent(journal, sent, clock, keep_days=30) == 0
        assert sorted(os.listdir(sent)) == ["brev", "later.pdf", "old-file.pdf", "old-folder", "old-link"]
        clock.advance(1.01 * DAY)
        assert purge_sent(journal, sent, clock, keep_days=30) == 4
        assert os.listdir(sent) == ["later.pdf"]
        # A link is removed as a link: what it points at is not ours to delete.
        assert (outside / "keep-me.pdf").read_bytes() == b"not ours"
        clock.advance(29 * DAY)
        assert purge_sent(journal, sent, clock, keep_days=30) == 1
        assert os.listdir(sent) == []
    finally:
        journal.close()


def test_purge_journal_removes_old_finished_messages_and_their_status_files(harness):
    h = harness(quiet_period_seconds=0)
    make_folder_drop(h.outbox, "gammel-feil", sidecar=sidecar_xml(receiver="910075919"))
    _drop_with_deadline(h, "gammel-utlopt", h.clock.now() + timedelta(hours=1))
    h.run()
    old_rejected = _record(h, "gammel-feil")
    old_expired = _record(h, "gammel-utlopt")
    h.clock.advance(2 * 3600)
    assert expire_overdue(h.journal, h.intake, h.clock) == 1

    # Still open after 100 days: a sent message waiting for receipts far in the future.
    still_open = _sent_message(h, [Status.MOTTATT], deadline_in=timedelta(days=365))
    h.statuses.flush()

    h.clock.advance(80 * DAY)
    make_folder_drop(h.outbox, "ny-feil", sidecar=sidecar_xml(receiver="910075919"))
    h.run()
    recent_rejected = _record(h, "ny-feil")
    h.statuses.flush()
    h.clock.advance(20 * DAY)  # old ones finished 100 days ago, the recent one 20 days ago

    for record in (old_rejected, old_expired, still_open, recent_rejected):
        assert (h.status / record.status_name).exists()
    assert purge_journal(h.journal, h.status, h.clock, keep_days=90) == 2

    remaining = {r.row for r in h.journal.listing()}
    assert remaining == {still_open.row, recent_rejected.row}
    assert not (h.status / old_rejected.status_name).exists()
    assert not (h.status / old_expired.status_name).exists()
    assert (h.status / still_open.status_name).exists()
    assert (h.status / recent_rejected.status_name).exists()
    # The events went with their messages; the open message keeps its history.
    orphans = journal_rows(h.config.folders.journal_path,
                           "SELECT count(*) FROM events WHERE message NOT IN (SELECT id FROM messages)")
    assert orphans == [(0,)]
    assert [e.status for e in h.journal.events(still_open.row)] == [Status.OPPRETTET, Status.SENDT, Status.MOTTATT]
    # failed/ holds what the archivist may still want; retention does not touch it.
    assert {"gammel-feil", "gammel-utlopt", "ny-feil"} <= set(os.listdir(h.failed))

    assert purge_journal(h.journal, h.status, h.clock, keep_days=90) == 0


def test_run_retention_does_both(harness):
    h = harness(quiet_period_seconds=0)
    make_folder_drop(h.outbox, "feil", sidecar=sidecar_xml(receiver="910075919"))
    h.run()
    h.statuses.flush()
    rejected = _record(h, "feil")
    sent = h.config.folders.sent
    (sent / "gammel").mkdir()
    run_retention(h.journal, sent, h.status, h.clock, sent_days=30, journal_days=90)
    h.clock.advance(2 * DAY)
    (sent / "ny").mkdir()
    h.clock.advance(398 * DAY)
    run_retention(h.journal, sent, h.status, h.clock, sent_days=30, journal_days=90)
    assert os.listdir(sent) == ["ny"], "'ny' was first seen by this run: its 30 days start now"
    assert h.journal.find(rejected.message_id) == []
    assert not (h.status / rejected.status_name).exists()


def test_a_sent_drop_left_in_the_work_area_by_a_crash_moves_to_sent_at_restart(harness):
    h = harness(quiet_period_seconds=0)
    _drop_with_deadline(h, "sendt", h.clock.now() + timedelta(hours=1))
    h.run()
    record = _record(h, "sendt")
    # The crash came after SENT was committed and before the originals moved to sent/.
    with h.journal.transaction():
        h.journal.move(record.row, Phase.SENT, channel="DPO")
    assert len(_work_entries(h)) == 1
    h.intake.recover()
    assert _work_entries(h) == []
    assert sorted(os.listdir(h.config.folders.sent)) == ["sendt"]
    assert os.listdir(h.failed) == []


def _sent_through_the_sender(h, name: str) -> object:
    """The drop `name` (in the outbox, due within two hours) taken and sent by the real Sender: its upload had
    finished before a crash."""
    h.run()
    record = _record(h, name)
    h.journal.move(record.row, Phase.SENDING, channel="DPO", detail={**record.detail, "reference": "transfer-1"})
    h.clock.advance(2 * 3600)  # past its deadline: the sender asks the channel whether the upload finished
    record = h.journal.get(record.row)
    sender = _sender(h, _Channel(uploaded=True))
    try:
        sender.send_one(record)
    finally:
        sender.close()
    return h.journal.get(record.row)


def test_a_drop_copied_with_its_old_mtime_stays_in_sent_for_sent_days_from_its_sending(harness):
    h = harness(quiet_period_seconds=0)
    # cp -a and rsync -a keep the source's times: this drop folder and its files say they are a year old.
    _drop_with_deadline(h, "kopiert", h.clock.now() + timedelta(hours=1))
    for path in (h.outbox / "kopiert" / "brev.pdf", h.outbox / "kopiert" / "message.xml", h.outbox / "kopiert"):
        _age(path, h.clock.now(), 365)
    record = _sent_through_the_sender(h, "kopiert")
    assert record.phase == Phase.SENT
    sent = h.config.folders.sent
    assert os.listdir(sent) == ["kopiert"]

    run_retention(h.journal, sent, h.status, h.clock, sent_days=30, journal_days=90)
    assert os.listdir(sent) == ["kopiert"], "sent an hour ago: its originals are kept for 30 days"
    h.clock.advance(29 * DAY)
    run_retention(h.journal, sent, h.status, h.clock, sent_days=30, journal_days=90)
    assert os.listdir(sent) == ["kopiert"]
    h.clock.advance(2 * DAY)
    run_retention(h.journal, sent, h.status, h.clock, sent_days=30, journal_days=90)
    assert os.listdir(sent) == []


def test_originals_that_could_not_move_to_sent_are_not_sent_again_after_a_restart_past_journal_retention(harness):
    h = harness(quiet_period_seconds=0)
    _drop_with_deadline(h, "sendt", h.clock.now() + timedelta(hours=1))
    sent = h.config.folders.sent
    away = sent.with_name("sent.away")
    sent.rename(away)
    sent.write_bytes(b"")  # sent/ is not a folder now: the move of the originals fails
    record = _sent_through_the_sender(h, "sendt")
    assert record.phase == Phase.SENT
    assert len(_work_entries(h)) == 1, "the originals wait in the work area"

    # The message is delivered and finished; the journal's retention purges its row; then a restart.
    h.journal.move(record.row, Phase.DELIVERED)
    h.clock.advance(100 * DAY)
    assert purge_journal(h.journal, h.status, h.clock, keep_days=90) == 1
    sent.unlink()
    away.rename(sent)
    h.intake.recover()
    assert h.journal.listing() == [], "not taken for a new drop: it would be sent again"
    assert _work_entries(h) == []
    assert os.listdir(sent) == ["sendt"]
