"""The operator page escapes every value it shows, runs no script, and only answers GET."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.journal.phases import Phase
from gateway.journal.store import Journal

from .support import page_server

HOSTILE = "<script>alert('x')</script>"
IN_A_PATH = "<img src=x onerror=alert(1)>"  # no slash: it reaches the message route


def test_every_value_is_escaped_and_nothing_but_get_is_answered(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, FakeClock(datetime.now(UTC)))
    message_id = str(uuid.uuid4())
    record = journal.create(direction="out", message_id=message_id, status_name=f"x.{message_id}.xml",
                            phase=Phase.REJECTED, drop_name="a&b\"c", receiver=HOSTILE,
                            errors=[f"message.xml line 3, <receiver>: {HOSTILE} is not an organisation number"])
    journal.add_event(record.row, Status.FEIL, description=HOSTILE)
    try:
        with page_server(path) as url, httpx.Client(base_url=url, timeout=10) as client:
            for target in ("/", f"/?state=failed&drop={HOSTILE}", f"/messages/{message_id}"):
                response = client.get(target)
                assert "<script" not in response.text, target
                assert "&lt;script&gt;" in response.text, target
                assert "default-src 'none'" in response.headers["content-security-policy"]
            unknown = client.get(f"/messages/{IN_A_PATH}")
            assert unknown.status_code == 404 and "<img" not in unknown.text and "&lt;img" in unknown.text
            assert "a&amp;b&quot;c" in client.get(f"/messages/{message_id}").text
            assert client.post("/").status_code == 405
            assert client.delete(f"/messages/{message_id}").status_code == 405
    finally:
        journal.close()
