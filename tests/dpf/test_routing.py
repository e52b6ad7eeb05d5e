"""The routing rule, one case per branch: which channel, and the reason the status file shows."""

from __future__ import annotations

import pytest

from gateway.errors import PermanentChannelError
from gateway.routing.registry import InfoRecord, RegistryAnswer, ServiceRecord
from gateway.routing.route import choose_route

PROCESS = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
DOCUMENT = "urn:no:difi:arkivmelding:xsd::arkivmelding"
RECEIVER = "944444408"


def record(channel: str, level: int) -> ServiceRecord:
    return ServiceRecord(service=channel, process=PROCESS, document_types=(DOCUMENT,), certificate_pem="PEM",
                         endpoint_url=None, service_code=None, service_edition_code=None, security_level=level,
                         resource=None)


def answer(*records: ServiceRecord) -> RegistryAnswer:
    return RegistryAnswer(InfoRecord(RECEIVER, "Fiktiv kommune"), list(records))


DPO, DPF4, DPF3, DPV = record("DPO", 4), record("DPF", 4), record("DPF", 3), record("DPV", 3)

ROUTES = [
    # (case, records, security level, pin, channel, words in the reason)
    ("a DPO record wins", [DPO, DPF4, DPV], None, None, "DPO", "has a DPO record for process"),
    ("no DPO: SvarInn", [DPF4, DPV], None, None, "DPF", "no DPO record for this process; SvarInn address found: DPF"),
    ("neither: DPV", [DPV], None, None, "DPV", "no DPO record and no SvarInn address"),
    ("level 4 where SvarUt offers 4", [DPF4, DPV], 4, None, "DPF", "SvarInn address found: DPF"),
    ("a pin the registry offers", [DPO, DPF4, DPV], None, "DPV", "DPV", "the sidecar pins channel DPV"),
    ("a pin on DPF over DPO", [DPO, DPF4], None, "DPF", "DPF", "the sidecar pins channel DPF"),
]


@pytest.mark.parametrize(("case", "records", "level", "pin", "channel", "words"), ROUTES, ids=[r[0] for r in ROUTES])
def test_the_route_and_its_reason(case, records, level, pin, channel, words):
    route = choose_route(answer(*records), PROCESS, DOCUMENT, False, level, pinned=pin)
    assert route.channel == channel
    assert words in route.reason
    assert route.service_record is not None and route.service_record.service == channel


REFUSALS = [
    ("level 4 where SvarUt offers only 3", [DPF3, DPV], 4, None, "security level 4 may not go to the Altinn mailbox"),
    ("level 4 with no channel at all", [DPV], 4, None, "no DPO or DPF (SvarInn) route"),
    ("a pin the registry does not offer", [DPF4, DPV], None, "DPO", "pins channel DPO, but the service registry"),
    ("a pin below the message's level", [DPF3, DPV], 4, "DPF", "no DPF record for process"),
]


@pytest.mark.parametrize(("case", "records", "level", "pin", "words"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_no_route_is_feil_with_a_reason(case, records, level, pin, words):
    with pytest.raises(PermanentChannelError) as refused:
        choose_route(answer(*records), PROCESS, DOCUMENT, False, level, pinned=pin)
    assert words in str(refused.value)
    assert RECEIVER in str(refused.value)


def test_a_refused_pin_names_what_the_registry_offers():
    with pytest.raises(PermanentChannelError) as refused:
        choose_route(answer(DPF4, DPV), PROCESS, DOCUMENT, False, None, pinned="DPO")
    assert "it offers DPF, DPV" in str(refused.value)
    assert "remove <channel>" in str(refused.value)
