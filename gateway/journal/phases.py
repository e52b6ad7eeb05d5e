"""A message's place in the pipeline, and which moves between places are allowed.

Phases are the gateway's own bookkeeping; the eFormidling statuses a message collects are events
beside them (see contract.statuses).
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    # outgoing
    ACCEPTED = "accepted"  # OPPRETTET, waiting for routing and sending
    SENDING = "sending"  # a send attempt is under way (resumed after a crash)
    SENT = "sent"  # the channel took it; waiting for MOTTATT/LEVERT/LEST
    DELIVERED = "delivered"  # LEVERT, finished for expiry and retention; a receipt (LEST) may still come
    DONE = "done"  # finished well
    FAILED = "failed"  # FEIL after acceptance
    EXPIRED = "expired"  # LEVETID_UTLOPT
    REJECTED = "rejected"  # the drop was never accepted
    # incoming
    RECEIVED = "received"  # downloaded and verified, being handed to the inbox
    IN_INBOX = "in_inbox"  # INNKOMMENDE_MOTTATT: waiting for the archive system to take it
    TAKEN = "taken"  # INNKOMMENDE_LEVERT
    QUARANTINED = "quarantined"  # could not be accepted (bad signature, digest, path...)


FINISHED = frozenset({
    Phase.DELIVERED, Phase.DONE, Phase.FAILED, Phase.EXPIRED, Phase.REJECTED, Phase.TAKEN, Phase.QUARANTINED,
})

ALLOWED: dict[Phase | None, frozenset[Phase]] = {
    None: frozenset({Phase.ACCEPTED, Phase.REJECTED, Phase.RECEIVED, Phase.QUARANTINED}),
    Phase.ACCEPTED: frozenset({Phase.SENDING, Phase.SENT, Phase.FAILED, Phase.EXPIRED}),
    Phase.SENDING: frozenset({Phase.ACCEPTED, Phase.SENT, Phase.FAILED, Phase.EXPIRED}),
    Phase.SENT: frozenset({Phase.DELIVERED, Phase.DONE, Phase.FAILED, Phase.EXPIRED}),
    Phase.DELIVERED: frozenset({Phase.DONE, Phase.FAILED}),
    Phase.RECEIVED: frozenset({Phase.IN_INBOX, Phase.QUARANTINED, Phase.EXPIRED}),
    Phase.IN_INBOX: frozenset({Phase.TAKEN}),
    # The receiver's FEIL (a kvittering ERROR) after LEST, or the channel's after an expiry, is the last word.
    Phase.DONE: frozenset({Phase.FAILED}),
    Phase.FAILED: frozenset(),
    # A delivery status outranks expiry: LEVERT or LEST after LEVETID_UTLOPT (of a sent message) counts.
    Phase.EXPIRED: frozenset({Phase.DELIVERED, Phase.DONE, Phase.FAILED}),
    Phase.REJECTED: frozenset(),
    Phase.TAKEN: frozenset(),
    # A new copy of a quarantined message (its sender sent it again) gets its own chance.
    Phase.QUARANTINED: frozenset({Phase.RECEIVED}),
}


def is_allowed(current: Phase | None, new: Phase) -> bool:
    return new in ALLOWED[current]


# Moves only an operator makes (`efm-gateway retry`, `release`), never the pipeline: a failed message
# sent again from the start, and a quarantined incoming message opened again from its kept package.
# Kept apart from ALLOWED so that no pipeline step can take them by mistake.
OPERATOR_ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.FAILED: frozenset({Phase.ACCEPTED}),
    Phase.QUARANTINED: frozenset({Phase.RECEIVED}),
}


def operator_may(current: Phase, new: Phase) -> bool:
    """Whether an operator's command may move a message from `current` to `new`."""
    return new in OPERATOR_ALLOWED.get(current, frozenset()) or is_allowed(current, new)
