"""Issue #8 rules below the daemon: safe reads, names, limits, the rescan time, the log check."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

import pytest

from gateway.contract.sidecar import read_sidecar
from gateway.drops.claims import ClaimedDrop
from gateway.errors import MessageFormatError
from gateway.formats.asice import AsicDocument
from gateway.fsio import UnreadableFile, printable, read_regular_file, text_name
from gateway.identifiers import receiver_problem
from gateway.intake import service as intake_service
from gateway.intake.outbox import Candidate
from gateway.intake.validate import validate_claimed
from gateway.outbound.compose import check_documents
from tests.logcheck import unexpected_log_records

from .drops import make_folder_drop, pdf_bytes, sidecar_xml

# ---- the log check ------------------------------------------------------------------------------
LOG = """2026-12-01 10:00:00,001 INFO gateway.daemon: efm-gateway is running
2026-12-01 10:00:00,002 WARNING gateway.intake.service: rejected 'x', but could not move it
2026-12-01 10:00:01,003 ERROR gateway.intake.loop: the intake pass failed; trying again
Traceback (most recent call last):
  File "loop.py", line 1, in _run
AttributeError: 'OutboxScanner' object has no attribute 'next_change_in'
2026-12-01 10:00:02,004 INFO gateway.intake.service: accepted drop 'y'
"""


def test_the_log_check_finds_error_lines_and_tracebacks_and_allows_what_a_test_provokes():
    [record] = unexpected_log_records(LOG)
    assert record.startswith("2026-12-01 10:00:01,003 ERROR") and "next_change_in" in record
    assert unexpected_log_records(LOG, allowed=[r"the intake pass failed"]) == []
    # A traceback printed without a log record (a thread that died) is caught too.
    died = LOG.splitlines()[0] + "\nException in thread intake:\nTraceback (most recent call last):\n  ...\n"
    assert len(unexpected_log_records(died)) == 1
    assert unexpected_log_records("\n".join(LOG.splitlines()[:2])) == []


# ---- reading only regular files, bounded -------------------------------------------------------
def test_a_fifo_is_refused_without_blocking_and_a_link_without_being_followed(tmp_path):
    fifo = tmp_path / "message.xml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _catch(outcome, read_regular_file, fifo, 1000), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], UnreadableFile) and "named pipe (FIFO)" in outcome[0].reason
    link = tmp_path / "link.xml"
    link.symlink_to("/dev/zero")
    with pytest.raises(UnreadableFile, match="symbolic link"):
        read_regular_file(link, 1000)


def test_a_sparse_sidecar_is_refused_by_its_size_without_reading_it(tmp_path):
    sparse = tmp_path / "message.xml"
    sparse.write_bytes(b"")
    os.truncate(sparse, 1 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    sidecar = ClaimedDrop("t~d~sparse", "folder", "sparse", tmp_path)
    assert "larger than the 4194304 bytes" in validate_claimed(sidecar, _config(tmp_path), None, _Clock()).problems[0]
    assert time.monotonic() - started < 1
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100_000, f"memory grew by {grown_kib} KiB"


def test_a_huge_document_with_a_sha256_is_refused_by_its_size_before_it_is_hashed(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "message.xml").write_bytes(
        sidecar_xml(documents=[{"file": "stor.pdf", "main": True, "sha256": "ab" * 32}])
    )
    (drop / "stor.pdf").write_bytes(b"")
    os.truncate(drop / "stor.pdf", 5 << 30)
    started = time.monotonic()
    verdict = validate_claimed(ClaimedDrop("t~d~drop", "folder", "drop", drop), _config(tmp_path), None, _Clock())
    assert time.monotonic() - started < 2, "the document was hashed"
    assert any("more than the 1073741824 allowed" in problem for problem in verdict.problems)
    assert not any("SHA-256" in problem for problem in verdict.problems)


def _catch(outcome: list, function, *args) -> None:
    try:
        function(*args)
    except BaseException as exc:  # the test inspects it
        outcome.append(exc)


# ---- names and texts ----------------------------------------------------------------------------
def test_names_that_are_not_text_are_escaped_and_every_accepted_name_is_kept_as_it_is():
    assert text_name(os.fsdecode(b"brev\xe5")) == "brev%E5"
    assert text_name("linje\nskift") == "linje%0Askift"
    assert text_name("sak:1") == "sak%3A1"
    for kept in ("vedtak 2026 (endelig) – svar.pdf", "50%.pdf", "æøå.pdf"):
        assert text_name(kept) == kept
    assert printable("a:b\tc") == "a:b%09c"


def test_the_whole_text_of_an_element_counts_also_after_a_comment():
    sidecar, problems = read_sidecar(
        '<message xmlns="urn:efm-gateway:message:1"><receiver>910<!-- x -->075918</receiver>'
        "<title>Vedtak <!-- x --> om løyve</title>"
        '<documents><document main="true"><file>brev<!-- y -->.pdf</file></document></documents></message>'.encode()
    )
    assert problems == []
    assert sidecar is not None
    assert sidecar.title == "Vedtak  om løyve"
    assert sidecar.receiver == "910075918"
    assert sidecar.file_names == ["brev.pdf"]


def test_more_documents_than_the_schema_allows_are_refused_with_the_limit():
    sidecar, problems = read_sidecar(sidecar_xml(documents=[{"file": f"d{i}.pdf"} for i in range(1001)]))
    assert sidecar is None
    assert "1001 documents are listed; a message may carry at most 1000" in str(problems[0])


@pytest.mark.parametrize(
    ("names", "said"),
    [
        (["A.pdf", "a.pdf"], "differ only in upper and lower case"),
        (["mimetype"], "cannot be a document's name"),
        (["Manifest.XML"], "cannot be a document's name"),
        (["arkivmelding.xml"], "<arkivmeldingFile>"),
        (["C:brev.pdf"], "Windows file names cannot hold"),
        (["CON.pdf"], "reserved device name"),
        (["lpt1"], "reserved device name"),
        (["brev.pdf."], "ends with a dot or a space"),
        (["brev.pdf "], "ends with a dot or a space"),
    ],
)
def test_document_names_the_packer_or_a_windows_archive_cannot_take_are_refused(names, said):
    _sidecar, problems = read_sidecar(sidecar_xml(documents=[{"file": name} for name in names]))
    assert any(said in str(problem) for problem in problems), problems


@pytest.mark.parametrize("receiver", ["９１００７５９１８", "٩١٠٠٧٥٩١٨", "९१००७५९१८"])
def test_organisation_numbers_are_ascii_digits_only(receiver):
    expected = f"{receiver!r} is not an organisation number: it must be exactly 9 digits (0-9)"
    assert receiver_problem(receiver) == expected
    assert receiver_problem("910075918") is None


def test_compose_refuses_for_good_what_the_packer_cannot_pack(tmp_path):
    fifo = tmp_path / "brev.pdf"
    os.mkfifo(fifo)
    with pytest.raises(MessageFormatError, match="named pipe"):
        check_documents([AsicDocument("brev.pdf", fifo, "application/pdf")])
    (tmp_path / "a.pdf").write_bytes(b"x")
    with pytest.raises(MessageFormatError, match="used twice"):
        check_documents([AsicDocument(name, tmp_path / "a.pdf", "x") for name in ("A.pdf", "a.pdf")])


# ---- the scanner's rescan time, and claims that must never be left behind ------------------------
def test_the_scanner_says_when_the_first_waiting_drop_may_be_ready(harness):
    intake = harness(quiet_period_seconds=2, incomplete_timeout_seconds=60)
    assert intake.intake.scanner.next_change_in() is None
    (intake.outbox / "slow.xml").write_bytes(sidecar_xml(documents=[{"file": "slow.pdf", "main": True}]))
    (intake.outbox / "slow.pdf").write_bytes(pdf_bytes())
    intake.run()
    assert intake.intake.scanner.next_change_in() == pytest.approx(2.0)
    intake.clock.advance(1.5)
    assert intake.intake.scanner.next_change_in() == pytest.approx(0.5)
    intake.clock.advance(0.5)
    intake.run()
    assert intake.intake.scanner.next_change_in() is None
    assert len(intake.status_files()) == 1


def test_a_drop_whose_name_is_not_utf8_is_journalled_escaped_and_parked_also_after_a_crash(harness):
    intake = harness()
    name = os.fsdecode(b"brev\xe5")
    make_folder_drop(intake.outbox, name, files={"brev.pdf": pdf_bytes()})
    # A crash right after the claim: the next start journals it (this failed for ever before).
    claimed = intake.intake.claimer.claim(Candidate("folder", name, name))
    assert claimed is not None
    intake.intake.recover()
    [record] = intake.journal.listing()
    assert record.drop_name == "brev%E5" and record.phase == "rejected"
    assert "not valid UTF-8" in record.errors[0]
    assert sorted(os.listdir(intake.failed)) == ["brev%E5", "brev%E5.error.txt"]
    assert os.listdir(intake.config.folders.work_area) == []
    assert [path.name.split(".")[0] for path in intake.status_files()] == ["brev%E5"]


def test_a_drop_that_breaks_validation_itself_is_rejected_not_left_in_the_work_area(harness, monkeypatch):
    intake = harness()
    make_folder_drop(intake.outbox, "breaks")

    def broken(*_args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(intake_service, "validate_claimed", broken)
    intake.run(times=2, advance=1)
    [record] = intake.journal.listing()
    assert record.phase == "rejected" and "RuntimeError: a bug" in record.errors[0]
    assert os.listdir(intake.config.folders.work_area) == []
    assert "breaks.error.txt" in os.listdir(intake.failed)


# ---- helpers ------------------------------------------------------------------------------------
class _Clock:
    from gateway.clock import SystemClock

    _clock = SystemClock()

    def now(self):
        return self._clock.now()

    def monotonic(self):
        return self._clock.monotonic()


def _config(root: Path):
    from gateway.config import load_config

    from .drops import write_config

    return load_config(write_config(root))


@pytest.mark.parametrize("journal_open", [False, True])
def test_validate_reads_the_journal_read_only_and_writes_nothing(tmp_path, journal_open):
    import subprocess
    import sys

    from gateway.clock import SystemClock
    from gateway.config import load_config
    from gateway.folders import prepare_folders
    from gateway.journal.store import Journal

    from .drops import write_config

    config_path = write_config(tmp_path)
    config = load_config(config_path)
    prepare_folders(config)
    journal = Journal(config.folders.journal_path, SystemClock())  # as a running daemon holds it
    if not journal_open:
        journal.close()
    try:
        drop = make_folder_drop(config.folders.outbox, "brev", staging=tmp_path / "staging")
        before = {path: path.stat().st_mtime_ns for path in (tmp_path / "var").rglob("*")}
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "validate", str(drop), "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TMPDIR": str(tmp_path / "staging")},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("ACCEPTED: 'brev' would become message")
        after = {path: path.stat().st_mtime_ns for path in (tmp_path / "var").rglob("*")}
        if journal_open:
            # A reader beside a running daemon takes its read lock in the shared-memory index (-shm),
            # as every reader of a WAL database does; the journal and its WAL are left as they were.
            shm = config.folders.journal_path.with_name("journal.sqlite-shm")
            before.pop(shm, None), after.pop(shm, None)  # not there on PostgreSQL (EFM_TEST_JOURNAL)
        assert after == before
        assert os.listdir(tmp_path / "staging") == []
    finally:
        if journal_open:
            journal.close()
