"""A gateway whose Maskinporten client id is wrong fails in the sandbox as it would in Digdir's test environment:
the message waits (no FEIL), the log says MP-100 and what to fix in one line without a traceback, and once
config.yaml is right the same message goes."""

from __future__ import annotations

import re
import uuid

import pytest
import yaml

from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml

from .network import PEER, A, Gateway, SandboxProcess, gateway_config, settle, wait
from .statusfiles import current

# The channel's pause after a refused grant (network.refusal_pause_seconds, 60 s by default), short here so the
# message's next try comes soon once the client id is right; still long enough that the refusal is not asked
# again within the few seconds the first gateway is watched.
PAUSE_S = 5


@pytest.fixture
def sandbox(tmp_path):
    process = SandboxProcess(tmp_path / "sandbox")
    yield process
    process.stop()


@pytest.mark.slow
def test_a_wrong_client_id_holds_the_message_with_one_line_naming_the_fix(sandbox, tmp_path):
    root = tmp_path / "a"
    config = gateway_config(root, sandbox, A, network={"client_id": f"efm-gateway-{A}",
                                                           "refusal_pause_seconds": PAUSE_S})
    gateway = Gateway(root, config, allowed_log=("MP-100",)).start()
    try:
        message_id = str(uuid.uuid4())
        sidecar = sidecar_xml(receiver=PEER, extra=f"<messageId>{message_id}</messageId>",
                              documents=[{"file": "brev.pdf", "main": True, "mime": "application/pdf"}])
        make_folder_drop(gateway.outbox, "brev", files={"brev.pdf": pdf_bytes("brev")}, sidecar=sidecar,
                         staging=root / "staging")
        wait(lambda: "MP-100" in gateway.log(), timeout=30, message="Maskinporten's refusal in the log")
        settle(2)
        assert current(gateway.status, message_id) == "OPPRETTET"  # waiting, not FEIL
        refusals = [line for line in gateway.log().splitlines() if "MP-100" in line]
        assert refusals and all("set network.client_id" in line for line in refusals)
        assert "Traceback" not in gateway.log()
        # The grant is not asked for again at once for every message: the channel pauses.
        assert len([line for line in refusals if "start-up check" not in line]) <= 3
    finally:
        gateway.process.stop()  # fails on an unexpected ERROR line or a traceback

    settings = yaml.safe_load(config.read_text())
    settings["network"]["client_id"] = f"MOVE_IP_{A}"
    config.write_text(yaml.safe_dump(settings))
    gateway = Gateway(root, config).start()
    try:
        # Its next try was set a pause after the refusal: it goes then, by itself.
        wait(lambda: current(gateway.status, message_id) in ("SENDT", "MOTTATT", "LEVERT", "LEST"), timeout=120,
             message="the message sent once the client id is right")
    finally:
        gateway.process.stop()
    assert not re.search(r"\bMP-\d{3}\b", (root / "daemon.log").read_text().split("efm-gateway is running")[-1])
