"""How the daemon and the commands log: one line per event, as text with key=value fields or as JSON.

    2026-12-01 23:15:20,123 INFO gateway.outbound.sender: message 5f0c… sent on DPO message_id=5f0c… channel=DPO

A call names its message with `extra=event_fields(...)` (message_id, drop, channel, status); a line
that does not, but names a messageId in its text, gets message_id= from there. Under systemd (stdout
is the journal: JOURNAL_STREAM) the time is left out, journald stamps each line itself, and each
line starts with its syslog priority (`<3>`), which journald strips and keeps as the priority.
Tokens, bearer credentials and passwords that reach a message are masked; document content is
never logged by the gateway to begin with.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

FIELDS = ("message_id", "drop", "channel", "status")
FORMATS = ("text", "json")
CHATTY = ("apscheduler", "httpx", "httpcore", "uvicorn.access")

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_SECRETS = (
    (re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"), "[token]"),  # a JWT (or JWS), signed or not
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]{8,}"), r"\1 [secret]"),
    (re.compile(r"(?i)\b(password|passwd|secret|client_secret|access_token)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"),
     r"\1\2[secret]"),
)
# syslog priorities, for journald's "<N>" line prefix
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def event_fields(
    message_id: str | None = None, drop: str | None = None, channel: str | None = None, status: str | None = None
) -> dict[str, str]:
    """`extra=` for a log call about one message: the fields every log line of it carries."""
    given = {"message_id": message_id, "drop": drop, "channel": channel, "status": status}
    return {key: str(value) for key, value in given.items() if value}


def under_journald(stream: IO[str] | None = None) -> bool:
    """Whether `stream` (stdout) is connected to the journal: JOURNAL_STREAM names its device and inode."""
    marker = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in marker:
        return False
    try:
        stat = os.fstat((stream or sys.stdout).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    device, _, inode = marker.partition(":")
    return device == str(stat.st_dev) and inode == str(stat.st_ino)


def mask_secrets(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _fields_of(record: logging.LogRecord, message: str) -> dict[str, str]:
    fields = {key: str(getattr(record, key)) for key in FIELDS if getattr(record, key, None)}
    if "message_id" not in fields:
        found = _UUID.search(message)
        if found:
            fields["message_id"] = found.group(0).lower()
    return fields


def _value(text: str) -> str:
    """A key=value value: bare when it is one plain word, else quoted."""
    if text and re.fullmatch(r"[\w.:@/+-]+", text):
        return text
    return json.dumps(text, ensure_ascii=False)


class _Formatter(logging.Formatter):
    def __init__(self, log_format: str, journald: bool) -> None:
        super().__init__()
        self.log_format = log_format
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        message = mask_secrets(record.getMessage())
        fields = _fields_of(record, message)
        problem = self.formatException(record.exc_info) if record.exc_info else None
        # Text keeps logging's own time stamp (local time, as tests/logcheck.py reads it); JSON says UTC.
        moment = self.formatTime(record)
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>" if self.journald else ""
        if self.log_format == "json":
            utc = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            line: dict[str, Any] = {} if self.journald else {"time": utc.replace("+00:00", "Z")}
            line.update(level=record.levelname, logger=record.name, message=message, **fields)
            if problem:
                line["exception"] = mask_secrets(problem)
            return prefix + json.dumps(line, ensure_ascii=False)
        text = " ".join(
            [*([] if self.journald else [moment]), record.levelname, f"{record.name}:", message.replace("\n", "\\n")]
            + [f"{key}={_value(value)}" for key, value in fields.items()]
        )
        if problem:  # a traceback keeps its lines: it is a bug report, read by people
            text += "\n" + mask_secrets(problem)
        return prefix + text


def configure_logging(level: str = "INFO", log_format: str = "text", stream: IO[str] | None = None) -> None:
    """Send every log line to `stream` (stdout) in `log_format`; replaces any handler set before."""
    if log_format not in FORMATS:
        raise ValueError(f"logging.format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    stream = stream or sys.stdout
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(log_format, under_journald(stream)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in CHATTY:
        logging.getLogger(chatty).setLevel(logging.WARNING)
