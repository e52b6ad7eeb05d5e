"""Which channel carries a message, and why, in words that go into the status file.

Organisation: a DPO record for the process wins, then DPF (SvarInn), then DPV (Altinn mailbox).
Person: an active digital mailbox (DPI), else print for vedtak, else DPV. Security level 4 with no
DPO/DPF (organisation) or DPI (person) route is an error, never a silent DPV; a record counts only
where its channel offers the message's level (DPF: where the receiver's SvarUt takes level 4). A
sidecar may pin the channel: the pin wins when the registry offers a usable record on it, and is
refused with a reason when not.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import PermanentChannelError
from gateway.routing.registry import RegistryAnswer, ServiceRecord

DIGITAL_DOCUMENT = "urn:no:difi:digitalpost:xsd:digital::digital"
PRINT_DOCUMENT = "urn:no:difi:digitalpost:xsd:fysisk::print"
VEDTAK_PROCESS = "urn:no:difi:profile:digitalpost:vedtak:ver1.0"


@dataclass(frozen=True)
class Route:
    channel: str
    service_record: ServiceRecord | None
    reason: str
    is_print: bool = False


def _usable(record: ServiceRecord, process: str, document_type: str, security_level: int | None) -> bool:
    if record.process and record.process != process:
        return False
    # A DPI record answers for both digital and print: which one it offers is decided below.
    if record.service != "DPI" and record.document_types and document_type not in record.document_types:
        return False
    return not (
        security_level is not None and record.security_level is not None
        and record.security_level < security_level
    )


def _first(records: list[ServiceRecord], channel: str) -> ServiceRecord | None:
    return next((record for record in records if record.service == channel), None)


def choose_route(
    answer: RegistryAnswer,
    process: str,
    document_type: str,
    is_person: bool,
    security_level: int | None,
    pinned: str | None = None,
) -> Route:
    """The route for a message, or PermanentChannelError explaining why there is none."""
    receiver = answer.info_record.identifier or "the receiver"
    usable = [r for r in answer.service_records if _usable(r, process, document_type, security_level)]
    if pinned:
        return _pinned_route(answer, usable, receiver, process, security_level, pinned)
    if is_person:
        return _person_route(answer, usable, receiver, process, document_type, security_level)

    dpo = _first(usable, "DPO")
    if dpo:
        return Route("DPO", dpo, f"receiver has a DPO record for process {process}: DPO")
    dpf = _first(usable, "DPF")
    if dpf:
        return Route("DPF", dpf, "receiver has no DPO record for this process; SvarInn address found: DPF")
    if security_level is not None and security_level >= 4:
        raise PermanentChannelError(
            f"{receiver} has no DPO or DPF (SvarInn) route for process {process}, and a message at "
            "security level 4 may not go to the Altinn mailbox (DPV); send it at security level 3 "
            "if its content allows, or agree another channel with the receiver"
        )
    dpv = _first(usable, "DPV")
    if dpv:
        return Route(
            "DPV", dpv, f"receiver has no DPO record and no SvarInn address for process {process}: DPV (Altinn mailbox)"
        )
    raise PermanentChannelError(_no_route(answer, receiver, process, document_type))


def _pinned_route(
    answer: RegistryAnswer,
    usable: list[ServiceRecord],
    receiver: str,
    process: str,
    security_level: int | None,
    pinned: str,
) -> Route:
    record = _first(usable, pinned)
    if record is not None:
        return Route(pinned, record, f"the sidecar pins channel {pinned}; the receiver has a {pinned} record for "
                                     f"process {process}: {pinned}")
    offered = sorted({r.service for r in usable})
    level = f" at security level {security_level}" if security_level else ""
    raise PermanentChannelError(
        f"the sidecar pins channel {pinned}, but the service registry offers {receiver} no {pinned} record for "
        f"process {process}{level}; it offers {', '.join(offered) or 'no channel'} for it: remove <channel> "
        "to let the routing rule choose, or pin one of those"
    )


def _person_route(
    answer: RegistryAnswer,
    usable: list[ServiceRecord],
    receiver: str,
    process: str,
    document_type: str,
    security_level: int | None,
) -> Route:
    dpi = [record for record in usable if record.service == "DPI"]
    digital = next((r for r in dpi if DIGITAL_DOCUMENT in r.document_types), None)
    if digital and document_type != PRINT_DOCUMENT:
        return Route("DPI", digital, "receiver has an active digital mailbox: DPI")
    printable = next((r for r in dpi if PRINT_DOCUMENT in r.document_types), None)
    if printable and (process == VEDTAK_PROCESS or document_type == PRINT_DOCUMENT):
        why = "print was asked for" if document_type == PRINT_DOCUMENT else "a vedtak must reach them"
        return Route("DPI", printable, f"receiver has no active digital mailbox and {why}: DPI print",
                     is_print=True)
    if security_level is not None and security_level >= 4:
        raise PermanentChannelError(
            f"{receiver} has no active digital mailbox (DPI) for process {process}, and a message at "
            "security level 4 may not go to the Altinn mailbox (DPV); send it as print or at level 3"
        )
    dpv = _first(usable, "DPV")
    if dpv:
        return Route("DPV", dpv, "receiver has no active digital mailbox: DPV (Altinn mailbox, notified)")
    raise PermanentChannelError(_no_route(answer, receiver, process, document_type))


def _no_route(answer: RegistryAnswer, receiver: str, process: str, document_type: str) -> str:
    offered = sorted({f"{r.service} ({r.process})" for r in answer.service_records})
    return (
        f"{receiver} has no channel for process {process} that accepts document type {document_type}; "
        f"the service registry offers: {', '.join(offered) or 'nothing'}"
    )
