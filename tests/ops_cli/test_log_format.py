"""Logs: one line per event with message_id=, drop=, channel=, status=, as text or JSON (logging.format);
no duplicated time stamp under journald; secrets masked."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gateway.logsetup import configure_logging, event_fields
from tests.foundation.drops import write_config
from tests.foundation.process import DaemonProcess, wait_for
from tests.logcheck import log_records

from .support import SAMPLES

MESSAGE_ID = str(uuid.uuid4())


@pytest.fixture
def captured():
    stream = io.StringIO()
    yield stream
    configure_logging()  # back to stdout, for the tests after this one


def test_text_lines_carry_the_fields_as_key_value(captured):
    configure_logging("INFO", "text", captured)
    log = logging.getLogger("gateway.test")
    log.info("message %s sent on %s", MESSAGE_ID, "DPO",
             extra=event_fields(MESSAGE_ID, "brev til nav", "DPO", "SENDT"))
    log.warning("message %s: the broker said\nno", MESSAGE_ID.upper())  # the id found in the text, one line
    first, second = captured.getvalue().splitlines()
    assert first.endswith(
        f"INFO gateway.test: message {MESSAGE_ID} sent on DPO message_id={MESSAGE_ID} drop=\"brev til nav\" "
        "channel=DPO status=SENDT"
    )
    assert second.endswith(f"the broker said\\nno message_id={MESSAGE_ID}")
    # The time stamp the log check reads (tests/logcheck.py) starts every line.
    assert [level for level, _ in log_records(captured.getvalue())] == ["INFO", "WARNING"]


def test_json_lines_are_one_object_each(captured):
    configure_logging("INFO", "json", captured)
    log = logging.getLogger("gateway.test")
    log.info("accepted drop %r as message %s", "sak-1", MESSAGE_ID, extra=event_fields(MESSAGE_ID, "sak-1"))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("sending failed unexpectedly")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2
    accepted, failed = (json.loads(line) for line in lines)
    assert accepted["level"] == "INFO" and accepted["logger"] == "gateway.test"
    assert accepted["message_id"] == MESSAGE_ID and accepted["drop"] == "sak-1"
    assert accepted["message"] == f"accepted drop 'sak-1' as message {MESSAGE_ID}"
    assert accepted["time"].endswith("Z")
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exception"]
    assert [level for level, _ in log_records(captured.getvalue())] == ["INFO", "ERROR"]


def test_secrets_are_masked(captured):
    configure_logging("INFO", "text", captured)
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzY29wZSI6ImVmb3JtaWRsaW5nIn0.c2lnbmF0dXJlLWJ5dGVz"
    logging.getLogger("gateway.test").info(
        "token %s; header Authorization: Bearer abcdefghijklmnop; keystore password=hemmelig1", token
    )
    line = captured.getvalue()
    for secret in (token, "abcdefghijklmnop", "hemmelig1"):
        assert secret not in line
    assert "[token]" in line and "Bearer [secret]" in line and "password=[secret]" in line


def _log_once_with(stdout: Path, environment: dict[str, str], log_format: str) -> str:
    code = (
        "import logging; from gateway.logsetup import configure_logging; "
        f"configure_logging('INFO', {log_format!r}); logging.getLogger('gateway.x').warning('disk %s full', 'state')"
    )
    with open(stdout, "w") as handle:
        subprocess.run([sys.executable, "-c", code], stdout=handle, env=environment, check=True, timeout=60)
    return stdout.read_text()


def test_under_journald_no_time_stamp_and_the_priority_first(tmp_path):
    out = tmp_path / "journal-stream"
    out.touch()
    identity = os.stat(out)
    journald = {**os.environ, "JOURNAL_STREAM": f"{identity.st_dev}:{identity.st_ino}"}
    # journald stamps each line itself and reads the priority from "<N>"; our line says the rest.
    assert _log_once_with(out, journald, "text") == "<4>WARNING gateway.x: disk state full\n"
    assert json.loads(_log_once_with(out, journald, "json").removeprefix("<4>")) == {
        "level": "WARNING", "logger": "gateway.x", "message": "disk state full",
    }
    # JOURNAL_STREAM inherited by a process whose stdout is elsewhere (a file): time stamps stay.
    elsewhere = {**os.environ, "JOURNAL_STREAM": f"{identity.st_dev}:{identity.st_ino + 1}"}
    assert _log_once_with(out, elsewhere, "text")[:2] == "20"


def test_the_daemon_logs_json_when_configured(tmp_path):
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "logging:\n  format: json\n")
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        outbox = tmp_path / "var" / "outbox"
        wait_for(lambda: outbox.is_dir(), 30, message="outbox")
        staging = tmp_path / "staging"
        shutil.copytree(SAMPLES / "brev-til-sandkasse-peer", staging)
        os.rename(staging, outbox / "brev")
        wait_for(lambda: "accepted drop" in (tmp_path / "daemon.log").read_text(), 30, message="accepted")
    finally:
        daemon.stop()
    lines = (tmp_path / "daemon.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    accepted = next(record for record in records if record["message"].startswith("accepted drop"))
    assert accepted["drop"] == "brev" and accepted["status"] == "OPPRETTET"
    assert accepted["message_id"] in accepted["message"]


def test_a_wrong_log_format_is_refused_with_the_key(tmp_path):
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "logging:\n  format: xml\n")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "logging.format" in result.stderr and "text" in result.stderr and "json" in result.stderr
