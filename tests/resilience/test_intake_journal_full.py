"""A journal that cannot commit while drops are being taken: the claimed drops are not left in the work area
until the next start. The running daemon journals them once the journal takes writes again, /healthz says
meanwhile that drops wait and why, the log says so in one line (no traceback), and nothing is taken twice.
The state folder lives on a small tmpfs that the test fills."""

from __future__ import annotations

import os

import pytest

from tests.foundation.drops import make_folder_drop, sidecar_xml, write_config
from tests.foundation.process import current_status, status_files, wait_for
from tests.ops.support import OpsDaemon, edit_config, healthz

from .support import mount_tmpfs, unmount

DROPS = 3
JOURNAL_LINE = r"intake could not journal \d+ claimed drop"


def _fill(folder) -> object:
    """Fill the file system of `folder` to the last byte."""
    ballast = folder / "ballast"
    # Unbuffered: a buffered file that met a full disk fails again when it is closed, with its rest unwritten.
    with open(ballast, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    return ballast


@pytest.mark.sqlite_only  # the journal's own disk fills: a PostgreSQL journal is on the database's
def test_drops_claimed_while_the_journal_cannot_commit_are_journaled_by_the_running_daemon(tmp_path):
    var = tmp_path / "var"
    mount_tmpfs(var, 8)
    daemon = None
    try:
        config = write_config(tmp_path)
        edit_config(config, ops={"enabled": True, "port": 0})
        daemon = OpsDaemon(config, tmp_path / "daemon.log", allowed_log=(JOURNAL_LINE,)).start()
        base = daemon.endpoint()
        outbox = var / "outbox"
        work = var / "state" / "work"
        staging = var / "staging"
        staging.mkdir()
        for index in range(DROPS):  # written before the disk fills: their move into the outbox needs no space
            make_folder_drop(staging, f"brev-{index}", sidecar=sidecar_xml(), staging=staging / "build")
        assert healthz(base)[0] == 200
        ballast = _fill(var)
        for index in range(DROPS):
            os.rename(staging / f"brev-{index}", outbox / f"brev-{index}")

        wait_for(lambda: "intake could not journal" in daemon.text(), 30, message="the line about the journal")
        code, report = healthz(base)
        assert code == 503 and not report["healthy"], report
        trouble = report["workers"]["intake"]["trouble"]
        assert "wait in" in trouble and str(work) in trouble and "full" in trouble, trouble
        claimed = os.listdir(work)
        assert claimed and len(claimed) + len(os.listdir(outbox)) == DROPS, "claimed, or waiting in the outbox"
        assert status_files(var / "status") == []

        ballast.unlink()
        wait_for(lambda: len(status_files(var / "status")) == DROPS, 30,
                 message="every claimed drop journaled, without a restart")
        assert all(current_status(path) == "OPPRETTET" for path in status_files(var / "status"))
        wait_for(lambda: healthz(base)[0] == 200, 30, message="/healthz healthy again")
        assert healthz(base)[1]["workers"]["intake"]["trouble"] is None
        assert os.listdir(outbox) == []
        text = daemon.text()
        assert "Traceback" not in text
        assert len([line for line in text.splitlines() if "intake could not journal" in line]) == 1
        assert "the journal takes drops again" in text
    finally:
        try:
            if daemon is not None:
                daemon.stop()
        finally:
            unmount(var)
