"""The one small interface every channel adapter offers.

An adapter gets a packed message and returns the channel's reference, or raises a channel error
(RetryableChannelError: try later; PermanentChannelError: give up). It never touches the journal or
the folders: `on_reference` lets the caller journal the channel's reference before the upload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class OutgoingPackage:
    message_id: str
    sender: str  # bare orgnr
    receiver: str  # bare orgnr
    package: Path | bytes  # the file to upload, or a small package held in memory
    reference: str | None = None  # the channel's reference from an earlier, interrupted attempt
    # A duplicate delivery is harmless (a status message, say): the channel may skip the two-step that
    # makes business messages exactly-once (journal the reference, then upload) and send in one request.
    repeatable: bool = False


class Channel(Protocol):
    name: str

    def validate(self, message_type: str, total_bytes: int) -> list[str]:
        """Channel rules for a message, as readable problems (empty when it may go)."""
        ...

    def send(self, package: OutgoingPackage, on_reference: Callable[[str], None]) -> str:
        """Deliver `package`; returns the channel's reference for it."""
        ...

    def already_sent(self, reference: str) -> bool:
        """Whether the transfer `reference` of an interrupted send was completed."""
        ...

    def poll_inbound(self) -> list[str]:
        """References of messages waiting for us."""
        ...

    def fetch_inbound(self, reference: str, target: BinaryIO) -> int:
        """Download one waiting message into `target` (streamed); returns its size."""
        ...

    def acknowledge_inbound(self, reference: str) -> None:
        """Tell the channel the message is safely ours; it will not be offered again."""
        ...
