"""The SvarUt side of DPF, no I/O: the forsendelse we send, and what SvarUt's states mean to us.

A message becomes one forsendelse: the title, the receiver (digital delivery only: an archive system
does not want a printed letter), the security level (krevNiva4Innlogging at level 4), the
forsendelsestype (from the arkivmelding's `dpf` block), and our ids: `eksternReferanse` is the
messageId (how an interrupted send is found again), `korrelasjonsid` the conversationId, and both,
with the process, also ride in the Noark metadata's `ekstraMetadata`, which SvarInn hands to the
receiver, so that its reply can name our conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.channels.dpf.business import dpf_settings
from gateway.formats.business import Arkivmelding
from gateway.formats.sbd import StandardBusinessDocument

AVGIVENDE_SYSTEM = "efm-gateway"
SENSITIVE_PROCESS = "urn:no:difi:profile:arkivmelding:taushetsbelagt:ver1.0"
# Keys of our ids in metadataFraAvleverendeSystem.ekstraMetadata (sent, and read back from SvarInn).
MESSAGE_ID_KEY = "eformidling.messageId"
CONVERSATION_ID_KEY = "eformidling.conversationId"
PROCESS_KEY = "eformidling.process"
MAX_TITLE = 1000

# Every state of ForsendelseStatus in forsendelse-status-api-v2.json: (our status, words).
SENT = "SENDT"
STATE_MEANINGS: dict[str, tuple[str, str]] = {
    "MOTTATT": (SENT, "received by SvarUt"),
    "AKSEPTERT": (SENT, "accepted by SvarUt"),
    "KLAR_FOR_MOTTAK": (SENT, "waiting in the receiver's SvarInn"),
    "VARSLET": (SENT, "the receiver was notified"),
    "SENDT_DIGITALT": (SENT, "sent to the receiver's digital mailbox"),
    "SENDT_SDP": (SENT, "sent to the receiver's digital mailbox (SDP)"),
    "SENDT_PRINT": (SENT, "sent to print"),
    "LEVERT_SDP": ("LEVERT", "delivered to the receiver's digital mailbox (SDP)"),
    "PRINTET": ("LEVERT", "printed and posted"),
    "MANUELT_HANDTERT": ("LEVERT", "handled manually by SvarUt"),
    "LEST": ("LEST", "taken by the receiver's archive (SvarInn) or read in its mailbox"),
    "AVVIST": ("FEIL", "refused by SvarUt"),
    "IKKE_LEVERT": ("FEIL", "SvarUt could not deliver it"),
}


@dataclass(frozen=True)
class StateUpdate:
    status: str  # a contract.statuses.Status value
    description: str
    stamped_at: datetime | None


def updates_for_state(state: str, forsendelse_id: str, changed: datetime | None) -> list[StateUpdate]:
    """Our statuses for a forsendelse in `state`; SENDT is left out (we recorded it when it went)."""
    where = f"forsendelse {forsendelse_id}"
    meaning = STATE_MEANINGS.get(state)
    if meaning is None:
        return [StateUpdate("ANNET", f"SvarUt reports state {state} for {where}", changed)]
    status, words = meaning
    if status == SENT:
        return []
    if status == "FEIL":
        return [StateUpdate("FEIL", f"SvarUt state {state}: {words} ({where})", changed)]
    updates = [StateUpdate("LEVERT", f"{words} ({where}, SvarUt state {state})", changed)]
    if status == "LEST":
        updates.append(StateUpdate("LEST", f"{words} ({where}, SvarUt state {state})", changed))
    return updates


def forsendelse_for(
    sbd: StandardBusinessDocument,
    title: str,
    documents: list[tuple[str, str]],
    sender_name: str,
    receiver_name: str | None = None,
) -> dict[str, Any]:
    """The forsendelse JSON of `sbd`; `documents` are (file name, MIME type), main document first.

    The names are what the municipality's archive shows: ours from config, the receiver's from the
    service registry (its organisation number when the registry gave none)."""
    business = sbd.business_message
    level = business.sikkerhetsnivaa if isinstance(business, Arkivmelding) else None
    settings = dpf_settings(business)
    forsendelse_type = settings.forsendelse_type if settings else None
    ids = [
        {"key": MESSAGE_ID_KEY, "value": sbd.message_id},
        {"key": CONVERSATION_ID_KEY, "value": sbd.conversation_id},
        {"key": PROCESS_KEY, "value": sbd.process},
    ]
    forsendelse: dict[str, Any] = {
        "tittel": title[:MAX_TITLE],
        "mottaker": {"navn": receiver_name or sbd.receiver, "digitalId": sbd.receiver},
        "svarSendesTil": {"navn": sender_name or sbd.sender, "digitalId": sbd.sender},
        "avgivendeSystem": AVGIVENDE_SYSTEM,
        "kunDigitalLevering": True,
        "kryptert": True,
        "krevNiva4Innlogging": level is not None and level >= 4,
        "taushetsbelagtPost": sbd.process == SENSITIVE_PROCESS,
        "eksternReferanse": sbd.message_id,
        "korrelasjonsid": sbd.conversation_id,
        "metadataFraAvleverendeSystem": {"tittel": title[:MAX_TITLE], "ekstraMetadata": ids},
        "dokumenter": [{"filnavn": name, "mimeType": mime} for name, mime in documents],
    }
    if forsendelse_type:
        forsendelse["forsendelsestype"] = forsendelse_type
    return forsendelse


def extra_metadata(forsendelse: dict[str, Any]) -> dict[str, str]:
    """`ekstraMetadata` of a forsendelse from SvarInn, as a mapping (both metadata blocks, first wins)."""
    found: dict[str, str] = {}
    for block in ("metadataFraAvleverendeSystem", "metadataForImport"):
        metadata = forsendelse.get(block)
        entries = metadata.get("ekstraMetadata") if isinstance(metadata, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("value"), str):
                found.setdefault(entry["key"], entry["value"])
    return found
