"""Channel choice: DPO before DPF before DPV for organisations."""

from __future__ import annotations

import pytest

from gateway.errors import PermanentChannelError
from gateway.routing import InfoRecord, RegistryAnswer, ServiceRecord, choose_route

ADMIN = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
ARKIVMELDING = "urn:no:difi:arkivmelding:xsd::arkivmelding"
INFO = "urn:no:difi:profile:digitalpost:info:ver1.0"


def record(service: str, process: str = ADMIN, document_types: tuple[str, ...] = (ARKIVMELDING,),
           security_level: int | None = None) -> ServiceRecord:
    return ServiceRecord(service, process, document_types, None if service == "DPV" else "PEM",
                         "http://x", None, None, security_level, None)


def answer(*records: ServiceRecord, identifier: str = "910075918") -> RegistryAnswer:
    return RegistryAnswer(InfoRecord(identifier, "Mottaker"), list(records))


def test_dpo_wins_over_dpf_and_dpv() -> None:
    route = choose_route(answer(record("DPV"), record("DPF"), record("DPO")), ADMIN, ARKIVMELDING, False, 3)
    assert route.channel == "DPO"
    assert route.reason == f"receiver has a DPO record for process {ADMIN}: DPO"


def test_dpf_when_there_is_no_dpo_record_for_the_process() -> None:
    other_process = record("DPO", process="urn:no:difi:profile:arkivmelding:naturOgMiljoe:ver1.0")
    route = choose_route(answer(other_process, record("DPF"), record("DPV")), ADMIN, ARKIVMELDING, False, 3)
    assert route.channel == "DPF"
    assert route.reason == "receiver has no DPO record for this process; SvarInn address found: DPF"


def test_dpv_when_there_is_neither_dpo_nor_dpf() -> None:
    route = choose_route(answer(record("DPV")), ADMIN, ARKIVMELDING, False, None)
    assert route.channel == "DPV"
    assert route.service_record is not None and route.service_record.certificate_pem is None
    assert "no DPO record and no SvarInn address" in route.reason


def test_security_level_4_with_only_dpv_is_an_error_not_a_silent_dpv() -> None:
    with pytest.raises(PermanentChannelError, match="security level 4 may not go to the Altinn mailbox"):
        choose_route(answer(record("DPV")), ADMIN, ARKIVMELDING, False, 4)


def test_a_dpo_record_below_the_messages_security_level_is_not_used() -> None:
    route = choose_route(answer(record("DPO", security_level=3), record("DPF", security_level=4)),
                         ADMIN, ARKIVMELDING, False, 4)
    assert route.channel == "DPF"


def test_a_record_that_does_not_take_the_document_type_is_not_used() -> None:
    receipts_only = record("DPO", document_types=("urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering",))
    with pytest.raises(PermanentChannelError, match=r"no channel for process .* document type"):
        choose_route(answer(receipts_only), ADMIN, ARKIVMELDING, False, 3)


# Persons (DPI, print or DPV): the person routing table in tests/dpi/test_routing.py.
