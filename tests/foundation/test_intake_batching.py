"""Intake takes a pass's drops in batches: what batching must not change, and leaks it must not have."""

from __future__ import annotations

import threading

from gateway.contract.statuses import Status
from gateway.intake import service
from gateway.journal.phases import Phase

from .drops import make_folder_drop, pdf_bytes, sidecar_xml
from .process import current_status

MESSAGE_ID = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def test_two_drops_with_one_message_id_in_the_same_batch_accept_only_the_first(harness):
    h = harness(quiet_period_seconds=0)
    with_id = sidecar_xml(extra=f"<messageId>{MESSAGE_ID}</messageId>")
    make_folder_drop(h.outbox, "a-first", sidecar=with_id)
    make_folder_drop(h.outbox, "b-second", sidecar=with_id)
    make_folder_drop(h.outbox, "c-other")
    counts = h.run()
    assert (counts.accepted, counts.rejected) == (2, 1)
    phases = sorted((r.drop_name, r.phase) for r in h.journal.listing(limit=10))
    rejected = [name for name, phase in phases if phase == Phase.REJECTED]
    assert len(rejected) == 1
    assert "was already used by the drop" in (h.failed / f"{rejected[0]}.error.txt").read_text()
    assert sorted(current_status(p) for p in h.status_files()) == ["FEIL", "OPPRETTET", "OPPRETTET"]


def test_a_pass_larger_than_one_journal_batch_takes_every_drop(harness, monkeypatch):
    monkeypatch.setattr(service, "JOURNAL_BATCH", 3)
    h = harness(quiet_period_seconds=0)
    for index in range(10):
        make_folder_drop(h.outbox, f"drop-{index:02d}")
    counts = h.run()
    assert counts.accepted == 10
    assert [current_status(p) for p in h.status_files()] == ["OPPRETTET"] * 10
    assert h.journal.dirty() == []
    assert list(h.outbox.iterdir()) == []


def test_the_scanner_forgets_the_sidecars_of_drops_it_took(harness):
    h = harness(quiet_period_seconds=0)
    for index in range(20):
        make_folder_drop(h.outbox, f"drop-{index:02d}")
    h.run()
    assert h.intake.scanner._sidecar_cache == {}
    assert h.intake.scanner._seen == {}


def test_concurrent_flushes_never_mark_a_change_clean_twice(harness):
    h = harness(quiet_period_seconds=0)
    for index in range(30):
        make_folder_drop(h.outbox, f"drop-{index:02d}")
    h.run()
    records = h.journal.listing(limit=100)
    for record in records:
        h.journal.add_event(record.row, Status.SENDT, description="sent")
    start = threading.Barrier(4)

    def flush() -> None:
        start.wait()
        for _ in range(5):
            h.statuses.flush(limit=7)

    threads = [threading.Thread(target=flush) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert min(h.journal.get(record.row).status_dirty for record in records) == 0
    # A later change is still written: it was not swallowed by a count below zero.
    h.journal.add_event(records[0].row, Status.LEVERT, description="delivered")
    assert h.statuses.flush() == 1
    assert current_status(h.status / records[0].status_name) == "LEVERT"


def test_a_folder_whose_sidecar_declares_every_size_is_taken_before_the_quiet_period(harness):
    h = harness(quiet_period_seconds=100)
    content = pdf_bytes("sized")
    sized = sidecar_xml(documents=[{"file": "brev.pdf", "main": True, "size": len(content)}])
    make_folder_drop(h.outbox, "sized", files={"brev.pdf": content}, sidecar=sized)
    make_folder_drop(h.outbox, "unsized")
    counts = h.run()
    assert counts.accepted == 1
    assert [p.name for p in h.outbox.iterdir()] == ["unsized"]
    h.clock.advance(101)
    assert h.run().accepted == 1
