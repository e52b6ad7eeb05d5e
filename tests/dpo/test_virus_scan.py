"""A message whose upload the broker's virus scan refuses ends as FEIL with the broker's reason, and is
not sent again; a clean one beside it goes on to SENDT and LEST (a real gateway and sandbox process)."""

from __future__ import annotations

import uuid

import httpx

from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml

from .network import PEER, A, Gateway, SandboxProcess, gateway_config, settle, wait
from .statusfiles import NS, current, history, status_of


def test_a_transfer_whose_scan_fails_ends_as_feil_with_the_brokers_reason(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    gateway = None
    try:
        infected, clean = str(uuid.uuid4()), str(uuid.uuid4())
        answer = httpx.post(f"{sandbox.url}/broker/_sandbox/scan", json={"failReferences": [infected]}, timeout=10)
        assert answer.status_code == 200 and answer.json()["failReferences"] == [infected]
        gateway = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A)).start()
        for name, message_id in (("smittet", infected), ("ren", clean)):
            sidecar = sidecar_xml(receiver=PEER, extra=f"<messageId>{message_id}</messageId>",
                                  documents=[{"file": "vedtak.pdf", "main": True}])
            make_folder_drop(gateway.outbox, name, files={"vedtak.pdf": pdf_bytes(name)}, sidecar=sidecar,
                             staging=gateway.root / "staging")

        wait(lambda: current(gateway.status, infected) == "FEIL", message="FEIL for the infected message")
        assert history(gateway.status, infected) == ["OPPRETTET", "FEIL"], "never SENDT: it was not Published"
        descriptions = [d.text or "" for d in status_of(gateway.status, infected).findall(
            "s:history/s:status/s:description", NS)]
        assert any("Malware scan failed" in text for text in descriptions), descriptions
        assert (gateway.var / "failed" / "smittet").is_dir(), "the drop is parked with its explanation"

        wait(lambda: current(gateway.status, clean) == "LEST", message="the clean message answered by the peer")
        assert history(gateway.status, clean)[:2] == ["OPPRETTET", "SENDT"]
        settle(1.0)  # a retry would have uploaded the infected package again by now
        uploads = sandbox.stats()["uploadsBySenderAndReference"]
        assert uploads[f"0192:{A}/{infected}"] == 1
        assert uploads[f"0192:{A}/{clean}"] == 1
    finally:
        if gateway is not None:
            gateway.process.stop()
        sandbox.stop()
