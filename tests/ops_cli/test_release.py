"""`efm-gateway release`: a quarantined incoming message is taken again by the running daemon.

A message signed under a CA the gateway does not trust is quarantined. Released as it is, the
receiver opens the kept package again and quarantines it again, with the reason. Once the operator
adds that CA to trust.ca_bundle (and restarts), a release puts it in the inbox; the sender is told.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
import yaml

from gateway.devcerts import create_dev_pki, dev_identity
from gateway.formats.asice import write_asice
from gateway.sandbox.network import start_network
from tests.dpo.network import FAST, A, B, Gateway, wait
from tests.dpo.test_quarantine import _package, _send_raw, _status_description
from tests.sandbox.peer_support import SendingGateway

from .support import cli, record_of


@pytest.fixture
def setting(tmp_path):
    network = start_network(tmp_path / "sandbox", peers=())
    http = httpx.Client(timeout=30)
    b_root = tmp_path / "b"
    b_root.mkdir()
    settings = network.config_snippet(B)
    config = {
        **settings,
        "network": {**settings["network"], **FAST["network"]},
        "channels": {"dpo": {**settings["channels"]["dpo"], **FAST["channels"]["dpo"]}},
        "folders": {
            "create_missing": True,
            **{name: f"var/{name}" for name in ("outbox", "status", "inbox", "failed", "sent", "state")},
        },
        "intake": FAST["intake"],
    }
    (b_root / "config.yaml").write_text(yaml.safe_dump(config))
    b = Gateway(b_root, b_root / "config.yaml").start()
    a = SendingGateway(network, A, http, tmp_path / "a-work")
    try:
        yield network, a, b, config, tmp_path
    finally:
        b.process.stop()
        http.close()
        network.stop()


def test_a_released_message_is_opened_again_and_reaches_the_inbox_once_its_signer_is_trusted(setting):
    network, a, b, config, tmp = setting
    config_path = b.root / "config.yaml"
    journal = b.var / "state" / "journal.sqlite"
    quarantine = b.var / "state" / "quarantine"

    # Signed by a certificate of A from a CA that B does not trust: quarantined.
    work = tmp / "untrusted"
    work.mkdir()
    sbd, documents = a.arkivmelding(B, "untrusted", message_id=str(uuid.uuid4()))
    stranger_pki = create_dev_pki(tmp / "stranger-pki", {A: "Avsender med annen CA"})
    plain = work / "asic.asice"
    with open(plain, "w+b") as handle:
        write_asice(handle, documents, A, B, dev_identity(stranger_pki, A))
    _send_raw(a, sbd, _package(sbd, plain, a.certificate_of(B), work))
    wait(lambda: _status_description(b, sbd.message_id)[0] == "FEIL", 60, message="quarantined")
    assert [entry.name.split(".")[0] for entry in quarantine.iterdir()] == [sbd.message_id]

    # Released with nothing fixed: opened again, quarantined again with the reason.
    released = cli(config_path, "release", sbd.message_id)
    assert released.returncode == 0, released.stderr
    assert "phase quarantined → received" in released.stdout
    wait(lambda: record_of(journal, sbd.message_id).phase == "quarantined", 30, message="quarantined again")
    # The status file may show the release (FEIL kept as ANNET) before the new FEIL: wait for both.
    wait(lambda: _status_description(b, sbd.message_id)[0] == "FEIL"
         and "released by the operator" in _status_description(b, sbd.message_id)[1], 15, message="status")
    current, descriptions = _status_description(b, sbd.message_id)
    assert current == "FEIL" and "untrusted" in descriptions.split("released by the operator")[-1]
    assert not (b.inbox / sbd.message_id).exists()

    # The operator trusts the stranger's CA, restarts the daemon, and releases it again: in the inbox.
    bundle = b.root / "trust.pem"
    bundle.write_bytes(network.pki.trust_bundle.read_bytes() + stranger_pki.trust_bundle.read_bytes())
    b.process.stop()
    config["trust"] = {"ca_bundle": str(bundle)}
    config_path.write_text(yaml.safe_dump(config))
    b.start()
    released = cli(config_path, "release", sbd.message_id[:8])
    assert released.returncode == 0, released.stderr
    wait(lambda: (b.inbox / sbd.message_id).is_dir(), 60, message="the released message in the inbox")
    assert (b.inbox / sbd.message_id / "vedtak.pdf").is_file()
    wait(lambda: _status_description(b, sbd.message_id)[0] == "INNKOMMENDE_MOTTATT", 15, message="status file")
    assert list(quarantine.iterdir()) == []  # the kept package is no longer needed
    history = cli(config_path, "status", sbd.message_id)
    assert "phase in_inbox" in history.stdout and history.stdout.count("operator: ") == 2

    # A message that is not quarantined cannot be released.
    again = cli(config_path, "release", sbd.message_id)
    assert again.returncode == 4 and "cannot be released: it is in the inbox" in again.stderr
