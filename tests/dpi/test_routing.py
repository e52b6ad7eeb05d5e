"""The person routing table: one case per rule, the channel and the reason the status file gets; then the same
rules on the sandbox registry's real records of its five persons."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.channels.dpi.kind import REGISTRY_SCOPE
from gateway.channels.dpi.options import DpiOptions
from gateway.channels.dpi.routing import DIGITAL_DOCUMENT, PRINT_DOCUMENT, VEDTAK_PROCESS
from gateway.devcerts import dev_identity
from gateway.errors import PermanentChannelError
from gateway.routing import InfoRecord, RegistryAnswer, ServiceRecord, ServiceRegistryClient, choose_route
from gateway.sandbox.network import start_network
from gateway.sandbox.persons import (
    MOVED_PERSON,
    PERSON_WITH_MAILBOX,
    PERSON_WITHOUT_MAILBOX,
    RESERVED_PERSON,
    UNNOTIFIABLE_PERSON,
)
from tests.sandbox.support import Credentials, tokens_for

INFO = "urn:no:difi:profile:digitalpost:info:ver1.0"
DIGITAL_DPV = "urn:no:difi:digitalpost:xsd:digital::digital_dpv"
FNR = "12857610030"
GATEWAY = "991825827"


def dpi(process: str, *, mailbox: bool = True, printed: bool = False, **fields: Any) -> ServiceRecord:
    base: dict[str, Any] = {"orgnrPostkasse": "944444513" if printed else "944444505", "kanVarsles": True,
                            "fysiskPost": printed, "epostAdresse": "kari@example.com", "mobilnummer": "+4799000001"}
    if mailbox and not printed:
        base["postkasseAdresse"] = "kari#1AB2"
    if printed:
        base["postAddress"] = {"name": "Kari", "street": "Storgata 1", "postalCode": "0155", "postalArea": "OSLO"}
    return ServiceRecord("DPI", process, (PRINT_DOCUMENT,) if printed else (DIGITAL_DOCUMENT,), "PEM", None, None,
                         None, None, None, FNR, None, {**base, **fields})


def dpv(process: str) -> ServiceRecord:
    return ServiceRecord("DPV", process, (DIGITAL_DPV,), None, None, "4255", "10", None, None, FNR)


def route(process: str, *records: ServiceRecord, document: str = DIGITAL_DOCUMENT, fallback: bool = False):
    answer = RegistryAnswer(InfoRecord(FNR, ""), list(records))
    options = {"dpi": DpiOptions(print_fallback=True)} if fallback else {}
    return choose_route(answer, process, document, True, 3, options=options)


CASES = [
    # (case, process, records, document, fallback) -> (channel, print, words in the reason)
    ("vedtak, reserved in KRR", VEDTAK_PROCESS,
     lambda p: [dpi(p, printed=True, reservert=True)], DIGITAL_DOCUMENT, False,
     ("DPI", True, "a vedtak must reach the receiver, who has reserved against digital post in KRR: DPI print")),
    ("vedtak, no mailbox", VEDTAK_PROCESS,
     lambda p: [dpi(p, printed=True, reservert=False), dpv(p)], DIGITAL_DOCUMENT, False,
     ("DPI", True, "a vedtak must reach the receiver, who has no active digital mailbox: DPI print")),
    ("vedtak, mailbox inactive in KRR", VEDTAK_PROCESS,
     lambda p: [dpi(p, aktiv=False), dpi(p, printed=True)], DIGITAL_DOCUMENT, False,
     ("DPI", True, "a vedtak must reach the receiver, who has no active digital mailbox: DPI print")),
    ("vedtak, not notifiable", VEDTAK_PROCESS,
     lambda p: [dpi(p, printed=True, kanVarsles=False)], DIGITAL_DOCUMENT, False,
     ("DPI", True, "a vedtak must reach the receiver, who cannot be notified of a digital letter "
                   "(KRR: kanVarsles false): DPI print")),
    ("vedtak, print alone though notifiable: the registry's reservation branch", VEDTAK_PROCESS,
     lambda p: [dpi(p, printed=True)], DIGITAL_DOCUMENT, False,
     ("DPI", True, "a vedtak must reach the receiver, who has reserved against digital post in KRR: DPI print")),
    ("vedtak, print beside DPV: the registry's no-mailbox branch", VEDTAK_PROCESS,
     lambda p: [dpi(p, printed=True), dpv(p)], DIGITAL_DOCUMENT, False,
     ("DPI", True, "a vedtak must reach the receiver, who has no active digital mailbox: DPI print")),
    ("vedtak, print alone and the record says nothing of notification", VEDTAK_PROCESS,
     lambda p: [dpi(p, printed=True, kanVarsles=None)], DIGITAL_DOCUMENT, False,
     ("DPI", True, "who has no active digital mailbox or has reserved against digital post")),
    ("vedtak, active mailbox, notifiable", VEDTAK_PROCESS,
     lambda p: [dpi(p)], DIGITAL_DOCUMENT, False,
     ("DPI", False, "a vedtak, and the receiver has an active digital mailbox (provider 944444505) and can be "
                    "notified: DPI digital")),
    ("info, active mailbox", INFO,
     lambda p: [dpi(p)], DIGITAL_DOCUMENT, False,
     ("DPI", False, "the receiver has an active digital mailbox (provider 944444505): DPI digital")),
    ("info, no mailbox: DPV as the registry says", INFO,
     lambda p: [dpi(p, printed=True), dpv(p)], DIGITAL_DOCUMENT, False,
     ("DPV", False, "receiver has no active digital mailbox: DPV (Altinn mailbox, notified)")),
    ("info, reserved: DPV as the registry says", INFO,
     lambda p: [dpi(p, reservert=True), dpv(p)], DIGITAL_DOCUMENT, False,
     ("DPV", False, "receiver has no active digital mailbox: DPV")),
    ("info, no mailbox, the sidecar asks for print fallback", INFO,
     lambda p: [dpi(p, printed=True), dpv(p)], DIGITAL_DOCUMENT, True,
     ("DPI", True, "the receiver has no active digital mailbox and the sidecar asks for print fallback: DPI print")),
    ("a print letter", INFO,
     lambda p: [dpi(p), dpi(p, printed=True)], PRINT_DOCUMENT, False,
     ("DPI", True, "the sidecar asks for a print letter: DPI print")),
]


@pytest.mark.parametrize(("process", "records", "document", "fallback", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_person_routing_table(process: str, records: Any, document: str, fallback: bool,
                              expected: tuple[str, bool, str]) -> None:
    chosen = route(process, *records(process), document=document, fallback=fallback)
    channel, printed, words = expected
    assert (chosen.channel, chosen.is_print) == (channel, printed)
    assert words in chosen.reason
    assert FNR not in chosen.reason


def test_info_without_mailbox_dpv_or_fallback_has_no_route() -> None:
    with pytest.raises(PermanentChannelError, match="has no channel for process"):
        route(INFO, dpi(INFO, printed=True))


def test_print_fallback_needs_a_print_record() -> None:
    chosen = route(INFO, dpv(INFO), fallback=True)
    assert chosen.channel == "DPV"


# ---- the same rules on the sandbox registry's own records -----------------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceRegistryClient]:
    with start_network(tmp_path_factory.mktemp("dpi-routing"), gateways={GATEWAY: "Sandkasse kommune"}, peers=()) \
            as network, httpx.Client(timeout=30) as http:
        identity = dev_identity(network.pki, GATEWAY)
        tokens = tokens_for(network.server, Credentials(identity.private_key, [identity.certificate]), GATEWAY,
                            (REGISTRY_SCOPE,), http)
        yield ServiceRegistryClient(network.server.registry_url, tokens, http, signers=network.registry_signers())




VEDTAK_PRINT = "a vedtak must reach the receiver, who "
SANDBOX_CASES = [
    ("mailbox-info", PERSON_WITH_MAILBOX, INFO, DIGITAL_DOCUMENT,
     ("DPI", False, "the receiver has an active digital mailbox (provider 944444505): DPI digital")),
    ("mailbox-vedtak", PERSON_WITH_MAILBOX, VEDTAK_PROCESS, DIGITAL_DOCUMENT,
     ("DPI", False, "a vedtak, and the receiver has an active digital mailbox (provider 944444505) and can be "
                    "notified: DPI digital")),
    ("reserved-vedtak", RESERVED_PERSON, VEDTAK_PROCESS, DIGITAL_DOCUMENT,
     ("DPI", True, VEDTAK_PRINT + "has reserved against digital post in KRR: DPI print")),
    ("reserved-info", RESERVED_PERSON, INFO, DIGITAL_DOCUMENT,
     ("DPV", False, "receiver has no active digital mailbox: DPV (Altinn mailbox, notified)")),
    ("nomailbox-info", PERSON_WITHOUT_MAILBOX, INFO, DIGITAL_DOCUMENT,
     ("DPV", False, "receiver has no active digital mailbox: DPV (Altinn mailbox, notified)")),
    ("nomailbox-vedtak", PERSON_WITHOUT_MAILBOX, VEDTAK_PROCESS, DIGITAL_DOCUMENT,
     ("DPI", True, VEDTAK_PRINT + "has no active digital mailbox: DPI print")),
    ("unnotifiable-vedtak", UNNOTIFIABLE_PERSON, VEDTAK_PROCESS, DIGITAL_DOCUMENT,
     ("DPI", True, VEDTAK_PRINT + "cannot be notified of a digital letter (KRR: kanVarsles false): DPI print")),
    ("unnotifiable-info", UNNOTIFIABLE_PERSON, INFO, DIGITAL_DOCUMENT,
     ("DPI", False, "the receiver has an active digital mailbox (provider 944444505): DPI digital")),
    # The person who has moved is reserved too: KRR knows nothing of a move; her post comes back (returned post).
    ("moved-vedtak", MOVED_PERSON, VEDTAK_PROCESS, DIGITAL_DOCUMENT,
     ("DPI", True, VEDTAK_PRINT + "has reserved against digital post in KRR: DPI print")),
    ("moved-print", MOVED_PERSON, INFO, PRINT_DOCUMENT,
     ("DPI", True, "the sidecar asks for a print letter: DPI print")),
]


@pytest.mark.parametrize(("person", "process", "document", "expected"), [case[1:] for case in SANDBOX_CASES],
                         ids=[case[0] for case in SANDBOX_CASES])
def test_the_sandbox_persons_route_by_their_records(registry: ServiceRegistryClient, person: str, process: str,
                                                    document: str, expected: tuple[str, bool, str]) -> None:
    answer = registry.lookup(person, process)
    chosen = choose_route(answer, process, document, True, 3)
    assert (chosen.channel, chosen.is_print) == expected[:2], chosen.reason
    assert expected[2] in chosen.reason
    assert "or has reserved" not in chosen.reason
    assert person not in chosen.reason
