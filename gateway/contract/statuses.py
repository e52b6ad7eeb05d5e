"""The one status vocabulary, and how a set of status events reads as a current status."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    OPPRETTET = "OPPRETTET"
    SENDT = "SENDT"
    MOTTATT = "MOTTATT"
    LEVERT = "LEVERT"
    LEST = "LEST"
    FEIL = "FEIL"
    ANNET = "ANNET"
    LEVETID_UTLOPT = "LEVETID_UTLOPT"
    INNKOMMENDE_MOTTATT = "INNKOMMENDE_MOTTATT"
    INNKOMMENDE_LEVERT = "INNKOMMENDE_LEVERT"


# Progress order: a late or duplicated event never moves the current status backwards.
_PROGRESS = {
    Status.ANNET: 0,
    Status.OPPRETTET: 1,
    Status.SENDT: 2,
    Status.MOTTATT: 3,
    Status.INNKOMMENDE_MOTTATT: 3,
    Status.LEVERT: 4,
    Status.INNKOMMENDE_LEVERT: 4,
    Status.LEST: 5,
}
DELIVERED = frozenset({Status.LEVERT, Status.LEST, Status.INNKOMMENDE_LEVERT})


def current_status(statuses: list[Status] | set[Status]) -> Status | None:
    """FEIL ends a message. A delivery (LEVERT, LEST) outranks an expiry: a message delivered after its
    deadline was delivered. Otherwise LEVETID_UTLOPT ends it, and else the furthest status reached counts."""
    if not statuses:
        return None
    if Status.FEIL in statuses:
        return Status.FEIL
    if Status.LEVETID_UTLOPT in statuses and not DELIVERED & set(statuses):
        return Status.LEVETID_UTLOPT
    progress = [status for status in statuses if status in _PROGRESS]
    return max(progress, key=lambda status: _PROGRESS[status])
