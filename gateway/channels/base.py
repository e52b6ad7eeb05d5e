"""The one interface every channel offers the pipeline, and the values that cross it.

The sender, the receiver, the status poller and the status sender talk to every channel through
`Channel`; none of them knows a channel's wire. A channel packs, sends, polls and unpacks its own
format and returns results or raises channel errors (RetryableChannelError: try later;
PermanentChannelError: give up). It never touches the journal or the folders: `on_reference` lets
the caller journal the channel's reference before the upload, and every path a channel writes to is
handed to it.

    prepare(message, service)   -> a package (opaque to the pipeline); describe(package) -> words
    send(package, reference, on_reference) -> the channel's reference
    already_sent(reference)     -> whether an interrupted send completed
    poll_statuses(sent)         -> status updates, for channels whose statuses come by polling
    list_inbound() / fetch_inbound() / open_inbound() / acknowledge_inbound() / reject_inbound()
    send_status(...)            -> a status message owed to the sender of a received message
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from gateway.channels.records import ServiceRecord
from gateway.formats.asice import AsicContents, AsicDocument
from gateway.formats.sbd import StandardBusinessDocument


@dataclass(frozen=True)
class Capabilities:
    """What a channel can do; the pipeline asks these instead of naming channels."""

    two_way: bool  # it also brings messages to us
    statuses_by_polling: bool  # statuses come from poll_statuses(), not from the receiver's status messages
    receipt_types: frozenset[str]  # message types after which LEST is expected (a kvittering or a read status)
    max_bytes: int  # the largest message (its documents added up) the channel carries
    security_levels: frozenset[int]
    message_types: frozenset[str]
    carries_status_messages: bool = False  # send_status() works: MOTTATT/LEVERT go back to senders
    # Received messages carry the sender's signature (the ASiC-E's). False: the channel carries none and
    # its transport vouches for the sender (DPF: SvarInn), so `extract` returns no signer.
    signs_payloads: bool = True
    statuses_per_request: int = 1  # how many messages' statuses one poll_statuses request asks for
    # How a raw package of this channel is named when the receiver keeps it in quarantine/ (an extension
    # starting with a dot, or empty): `<messageId>.<transfer id>` + this.
    package_suffix: str = ".zip"

    def expects_receipt(self, message_type: str) -> bool:
        return message_type in self.receipt_types


@dataclass(frozen=True)
class OutgoingMessage:
    """A composed message: the SBD (the eFormidling model of the message) and its documents.

    `documents` hold arkivmelding.xml first when there is one, then the main document, then the rest;
    `titles` maps document names to the titles the archive system gave them.
    """

    sbd: StandardBusinessDocument
    documents: list[AsicDocument]
    title: str | None = None
    titles: Mapping[str, str] = field(default_factory=dict)
    # The sidecar's channel options blocks by channel key (Sidecar.options): each channel reads its own.
    options: Mapping[str, Any] = field(default_factory=dict)

    def total_bytes(self) -> int:
        return sum(document.size() for document in self.documents)


@dataclass(frozen=True)
class Package:
    """What `prepare` made and `send` delivers; its content is the channel's own business."""

    message_id: str
    sender: str  # bare orgnr
    receiver: str  # bare orgnr
    content: Any
    # A duplicate delivery is harmless (a status message, say): the channel may skip the two-step that
    # makes business messages exactly-once (journal the reference, then upload) and send in one request.
    repeatable: bool = False
    # What the status file should say of how it was packed: whose certificate it was encrypted to.
    note: str = ""


@dataclass(frozen=True)
class SentMessage:
    """An open outgoing message, as the status poller hands it to a polling channel."""

    message_id: str
    reference: str
    sent_at: datetime | None = None


@dataclass(frozen=True)
class StatusUpdate:
    """A status the channel reports for one of our messages (LEVERT, LEST, FEIL, ANNET...)."""

    message_id: str
    status: str  # a contract.statuses.Status value
    stamped_at: datetime | None  # when the channel (or the receiver) says it happened
    description: str
    # The provider no longer has the message (a status poll answered 404 or 410): no status can come any more,
    # and the poller stops asking for it.
    ends_polling: bool = False


@dataclass(frozen=True)
class InboundMessage:
    """A received transfer, opened: the SBD says what it is; `extract` verifies and unpacks its documents.

    `transport_sender` is who the channel itself says sent it (the broker transfer's sender), for the
    trust check against the SBD and the signature; `sender_unverified` says why there is none.
    """

    sbd: StandardBusinessDocument
    extract: Callable[[Path, bool], AsicContents] | None
    transport_sender: str | None = None
    # Words saying where the SBD's sender came from when neither the transport nor a signature vouches for it
    # (DPF: the forsendelse's own, unsigned fields); empty when one does. Such a message is delivered with the
    # words beside it, and never changes the status of a message of ours.
    sender_unverified: str = ""


class Channel(Protocol):
    name: str
    capabilities: Capabilities

    def validate(self, message: OutgoingMessage, service: ServiceRecord | None) -> list[str]:
        """The channel's own rules for a message, as readable problems (empty when it may go)."""
        ...

    def prepare(self, message: OutgoingMessage, service: ServiceRecord | None, work: Path) -> Package:
        """Pack, sign and encrypt `message` for this channel; `work` is a folder for large packages."""
        ...

    def describe(self, package: Package) -> str:
        """How `package` goes, in words for the route's reason ("notified by e-mail and SMS"); may be empty."""
        ...

    def send(self, package: Package, reference: str | None, on_reference: Callable[[str], None]) -> str:
        """Deliver `package`; returns the channel's reference. `reference` is an earlier, interrupted attempt's."""
        ...

    def already_sent(self, reference: str) -> bool:
        """Whether the send `reference` of an interrupted attempt was completed."""
        ...

    def poll_statuses(self, sent: Sequence[SentMessage]) -> list[StatusUpdate]:
        """Statuses of a batch of open messages (channels whose statuses come by polling; else [])."""
        ...

    def list_inbound(self) -> list[str]:
        """References of messages waiting for us (two-way channels; else [])."""
        ...

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        """Download one waiting message into `target` (streamed); returns its size."""
        ...

    def open_inbound(self, reference: str, download: BinaryIO, work: Path) -> InboundMessage:
        """Read a downloaded message; MessageFormatError or SecurityError when it cannot be read."""
        ...

    def acknowledge_inbound(self, reference: str) -> None:
        """Tell the channel the message is safely ours; it will not be offered again."""
        ...

    def reject_inbound(self, reference: str, reason: str) -> None:
        """Tell the channel we could not take the message (quarantined), with the reason."""
        ...

    def send_status(self, sbd: StandardBusinessDocument) -> None:
        """Send a status message (MOTTATT/LEVERT) about a message we received; duplicates are harmless."""
        ...
