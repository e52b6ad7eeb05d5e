"""A daemon's log is part of its behaviour: a test fails when the log of a process it ran holds a
traceback, or an ERROR or CRITICAL line, that the test did not provoke on purpose.

Every test that starts a real daemon or sandbox process checks its log when it stops the process
(`DaemonProcess.stop`, `SandboxProcess.stop`, ...). A test that provokes an error on purpose passes
`allowed_log` patterns (regular expressions searched in the whole log record, traceback included).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

# The text format of gateway/logsetup.py: "<asctime> <LEVEL> <logger>: <message> key=value...";
# with logging.format: json each record is one JSON object with its "level".
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) ")
_TRACEBACK = "Traceback (most recent call last)"
_BAD_LEVELS = ("ERROR", "CRITICAL")


def log_records(text: str) -> list[tuple[str | None, str]]:
    """(level, text) of each record; lines that do not start a record (tracebacks, output of a thread
    that died without logging) belong to the record before them, or to a record of level None."""
    records: list[tuple[str | None, list[str]]] = []
    for line in text.splitlines():
        start = _RECORD_START.match(line)
        level = start.group("level") if start else _json_level(line)
        if level or not records:
            records.append((level, [line]))
        else:
            records[-1][1].append(line)
    return [(level, "\n".join(lines)) for level, lines in records]


def _json_level(line: str) -> str | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    # A traceback is in its "exception" field, whose text still reads "Traceback (most recent call last)".
    level = record.get("level") if isinstance(record, dict) else None
    return level if isinstance(level, str) else None


def unexpected_log_records(text: str, allowed: Iterable[str] = ()) -> list[str]:
    patterns = [re.compile(pattern) for pattern in allowed]
    bad = []
    for level, record in log_records(text):
        if level not in _BAD_LEVELS and _TRACEBACK not in record and "Exception in thread" not in record:
            continue
        if any(pattern.search(record) for pattern in patterns):
            continue
        bad.append(record)
    return bad


def assert_clean_log(path: Path, allowed: Iterable[str] = ()) -> None:
    """Fail when the log at `path` holds an unexpected traceback or ERROR/CRITICAL record."""
    if not path.exists():
        return
    bad = unexpected_log_records(path.read_text(errors="replace"), allowed)
    if bad:
        shown = "\n---\n".join(record[:3000] for record in bad[:5])
        raise AssertionError(f"{path} holds {len(bad)} unexpected error record(s) or traceback(s):\n{shown}")
