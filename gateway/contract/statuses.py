"""The one status vocabulary, and how a set of status events reads as a current status."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
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
# In a history, statuses stamped at the same moment (a clock behind ours is clamped to our SENDT)
# read in the order a message goes through them; the ends come last.
_HISTORY_RANK = {**_PROGRESS, Status.ANNET: 2.5, Status.FEIL: 6, Status.LEVETID_UTLOPT: 6}
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


def history_order(stamped: Iterable[tuple[datetime, Status]]) -> list[int]:
    """The positions of `stamped` (moment, status) in the order a history reads: by moment (compared as
    instants, whatever their offsets), then by how far along the status is, then as recorded."""
    entries = list(stamped)
    return sorted(
        range(len(entries)),
        key=lambda index: (entries[index][0], _HISTORY_RANK.get(entries[index][1], 6), index),
    )
