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
FINAL = (Status.FEIL, Status.LEVETID_UTLOPT)  # in this order: a failure outranks an expiry


def current_status(statuses: list[Status]) -> Status | None:
    """FEIL or LEVETID_UTLOPT end a message; otherwise the furthest status reached counts."""
    if not statuses:
        return None
    for final in FINAL:
        if final in statuses:
            return final
    return max(statuses, key=lambda status: _PROGRESS[status])
