"""A node killed while it writes status files (between a temporary file's write and its rename) leaves that file
in the status folder, which every node shares: seen after the SIGKILL test, 105 of them. They are removed with
the retention job once they are older than any write takes; a node's write in flight, and the status files, stay."""

from __future__ import annotations

import os
import time

from gateway.clock import SystemClock
from gateway.fsio import TEMP_PREFIX
from gateway.journal.store import Journal
from gateway.receipts.writer import LEFTOVER_SECONDS, StatusWriter


def test_temporary_files_left_by_killed_writers_are_removed_and_nothing_else(tmp_path):
    status = tmp_path / "status"
    status.mkdir()
    left = status / f"{TEMP_PREFIX}26.19154.139831272253120"  # the name a killed writer left
    in_flight = status / f"{TEMP_PREFIX}27.20011.139831272253120"  # another node's, being written now
    status_file = status / "m0001.451975fc-450b-487b-9b03-02aec06c3fea.xml"
    for path in (left, in_flight, status_file):
        path.write_bytes(b"<status/>")
    old = time.time() - LEFTOVER_SECONDS - 60
    os.utime(left, (old, old))
    os.utime(status_file, (old, old))
    journal = Journal(tmp_path / "journal.sqlite", SystemClock())
    try:
        writer = StatusWriter(journal, status, journal.clock)
        assert writer.remove_leftovers() == 1
        assert sorted(os.listdir(status)) == sorted([in_flight.name, status_file.name])
        writer.close()
    finally:
        journal.close()
