"""A message sent again after its first copy was quarantined gets its own chance: into the inbox when it is
good, quarantined beside the first when it is not, and the operator sees both copies."""

from __future__ import annotations

import os
import uuid

from gateway.devcerts import create_dev_pki, dev_identity
from gateway.formats.asice import write_asice

from .network import A as SENDER
from .network import B, wait
from .test_quarantine import _package, _send_raw, _status_description, setting  # noqa: F401 - the fixture


def _untrusted_copy(a, tmp, sbd, documents, label: str) -> None:
    """`sbd` with its documents, signed by a CA that B does not trust."""
    work = tmp / f"copy-{label}"
    work.mkdir()
    stranger = dev_identity(create_dev_pki(tmp / f"stranger-{label}", {SENDER: "Falsk avsender"}), SENDER)
    plain = work / "asic.asice"
    with open(plain, "w+b") as handle:
        write_asice(handle, documents, SENDER, B, stranger)
    _send_raw(a, sbd, _package(sbd, plain, a.certificate_of(B), work))


def _kept(b, message_id: str) -> list[str]:
    quarantine = b.var / "state" / "quarantine"
    if not quarantine.is_dir():  # made with the first quarantined message
        return []
    return sorted(name for name in os.listdir(quarantine) if name.startswith(message_id))


def test_a_good_copy_sent_after_a_quarantined_one_reaches_the_inbox(setting):  # noqa: F811
    _network, a, b, tmp = setting
    sbd, documents = a.arkivmelding(B, "sendt-igjen", message_id=str(uuid.uuid4()))
    _untrusted_copy(a, tmp, sbd, documents, "first")
    wait(lambda: _status_description(b, sbd.message_id)[0] == "FEIL", 60, message="the first copy quarantined")
    assert len(_kept(b, sbd.message_id)) == 1

    a.send(sbd, documents)  # the sender sends the same message again, signed as it should be
    wait(lambda: (b.inbox / sbd.message_id).is_dir(), 60, message="the new copy in B's inbox")
    wait(lambda: _status_description(b, sbd.message_id)[0] == "INNKOMMENDE_MOTTATT", 30,
         message="its status file follows")
    _current, descriptions = _status_description(b, sbd.message_id)
    assert "quarantined" in descriptions and "untrusted" in descriptions, "the first copy's fate stays in view"
    assert len(_kept(b, sbd.message_id)) == 1, "the first copy's package is kept for the operator"


def test_a_bad_copy_sent_after_a_quarantined_one_is_quarantined_beside_it(setting):  # noqa: F811
    _network, a, b, tmp = setting
    sbd, documents = a.arkivmelding(B, "feil-igjen", message_id=str(uuid.uuid4()))
    _untrusted_copy(a, tmp, sbd, documents, "first")
    wait(lambda: len(_kept(b, sbd.message_id)) == 1, 60, message="the first copy quarantined")
    _untrusted_copy(a, tmp, sbd, documents, "second")
    wait(lambda: len(_kept(b, sbd.message_id)) == 2, 60, message="the second copy quarantined beside the first")
    wait(lambda: _status_description(b, sbd.message_id)[1].count("quarantined") == 2, 30,
         message="both quarantines in the status file")
    current, _descriptions = _status_description(b, sbd.message_id)
    assert current == "FEIL"
    assert not (b.inbox / sbd.message_id).exists()
