"""A receipt taken from Corner 2 survives a crash: the gateway is killed (SIGKILL) after Corner 2 has marked the
letter's open receipt read and before the gateway has applied it, and after the restart the letter still reaches
LEST. Corner 2 never offers a read receipt again, so only the gateway's own journal can bring it."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway.sandbox.persons import PERSON_WITH_MAILBOX
from tests.dpo.network import A, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current, history
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.suite_journal import journal_rows as rows_of

INFO = "urn:no:difi:profile:digitalpost:info:ver1.0"
OPEN_RECEIPT = ("<dpi><digital><title>Brev</title><openReceipt>true</openReceipt></digital></dpi>")
pytestmark = pytest.mark.slow


def drop_letter(gateway: Gateway) -> str:
    message_id = str(uuid.uuid4())
    extra = f"<messageId>{message_id}</messageId><process>{INFO}</process>{OPEN_RECEIPT}"
    sidecar = sidecar_xml(receiver=PERSON_WITH_MAILBOX, documents=[{"file": "brev.pdf", "main": True,
                                                                    "mime": "application/pdf"}],
                          extra=extra, message_type="digital")
    make_folder_drop(gateway.outbox, f"dpi-{message_id[:8]}", files={"brev.pdf": pdf_bytes("brev")},
                     sidecar=sidecar, staging=gateway.root / "staging")
    return message_id


def open_receipt_read(sandbox: SandboxProcess, message_id: str) -> bool:
    messages = httpx.get(f"{sandbox.url}/dpi/_sandbox/messages", timeout=10).json()
    found = [m for m in messages if m.get("messageId") == message_id]
    return any(r["type"] == "aapningskvittering" and r["read"] for m in found for r in m.get("receipts", []))


def journal_rows(gateway: Gateway, sql: str, params: tuple) -> list[tuple]:
    return rows_of(gateway.var / "state" / "journal.sqlite", sql, params)


def statuses_in_journal(gateway: Gateway, message_id: str) -> set[str]:
    return {status for (status,) in journal_rows(
        gateway, "SELECT e.status FROM events e JOIN messages m ON m.id = e.message WHERE m.message_id = ?",
        (message_id,))}


def test_a_receipt_marked_read_at_corner2_survives_a_kill_9_before_it_is_applied(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    # Status rounds 6 s apart: a receipt taken (and marked read) in one round is applied in the next.
    dpi = {"status_poll_seconds": 6, "handed_on_poll_seconds": 1}
    gateway = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A, channels={"dpi": dpi})).start()
    try:
        for _attempt in range(3):
            message_id = drop_letter(gateway)
            wait(lambda: open_receipt_read(sandbox, message_id), timeout=90,  # noqa: B023
                 message="Corner 2 marks the open receipt read")
            gateway.process.kill9()
            if "LEST" not in statuses_in_journal(gateway, message_id):
                break  # killed inside the window: read at Corner 2, not applied here
            gateway.start()  # the round applied it before the kill: try again with another letter
        else:
            pytest.fail("the kill never came between the receipt's mark-read and its application")

        kept = journal_rows(gateway, "SELECT receipt_key FROM channel_receipts WHERE channel = 'DPI' AND "
                                     "message_id = ?", (message_id,))
        assert any(key.startswith("aapningskvittering/") for (key,) in kept)
        # Corner 2 will not offer them again: every receipt of the letter that has come is read there.
        [letter] = [m for m in httpx.get(f"{sandbox.url}/dpi/_sandbox/messages", timeout=10).json()
                    if m.get("messageId") == message_id]
        assert {r["type"] for r in letter["receipts"] if r["read"]} >= {"leveringskvittering", "aapningskvittering"}

        gateway.start()
        wait(lambda: current(gateway.status, message_id) == "LEST", timeout=60, message="LEST after the restart")
        assert "LEVERT" in history(gateway.status, message_id)
        assert "LEST" in statuses_in_journal(gateway, message_id)
    finally:
        gateway.process.stop()
        sandbox.stop()
