"""HTTP client for DPI's Corner 2 (the sender's access point), production or sandbox alike.

`base_url` is the API root: `https://edi.edigard.com/api/v2/dpi` in production, `https://sandbox1.ediex.no/api/v2/dpi`
in test, `<sandbox>/dpi` on loopback (networks.md §5). Every call carries a Maskinporten token with
`digitalpostinnbygger:send` (the caller's `TokenSource`, from gateway.authorisation).

    send(forretningsmelding, dokumentpakke, kanal)   POST /messages/out, multipart as the reference sends it:
                                                     `forretningsmelding` (application/jwt, sbd.jwt) and
                                                     `dokumentpakke` (application/cms, asic.cms), streamed
    statuses(message_id)                             GET /messages/out/{id}/statuses; 404/410 -> MessageGone
    incoming(avsenderidentifikator, kanal)           GET /messages/in: the receipts waiting (204: none)
    mark_read(message_id)                            POST /messages/in/{id}/read (404 tolerated, as the reference)

`StatusPolling` polls the statuses of open messages with the reference's lessons built in: every request has its
own timeout (a hung Corner 2 costs one timeout, not the poller), polls never overlap (a message being asked for is
left out of a second call; receipts are taken by `ReceiptPolling`, one round at a time), old messages are asked
for less often, and a message Corner 2 no longer has (404, 410) gets one ANNET "deleted at the provider" that ends
its polling instead of being asked for ever.

Errors: network, timeouts, 429 and 5xx are RetryableChannelError; other 4xx PermanentChannelError with Corner 2's
own words (its problem+json).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from gateway.authorisation import Authorisation
from gateway.channels.base import SentMessage, StatusUpdate
from gateway.channels.dpi.package import MAX_DOKUMENTPAKKE_BYTES  # DPI's limit (eformidling.md: 50 MB)
from gateway.channels.status_rounds import poll_each
from gateway.clock import Clock, SystemClock
from gateway.errors import PermanentChannelError
from gateway.tokens import TokenSource, bearer_request, check_response, server_words

log = logging.getLogger(__name__)

DPI_SCOPE = "digitalpostinnbygger:send"  # networks.md §1: the Corner 2 token's scope
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_PAGE_SIZE = 100
HOUR = 3600.0
# (message at least this old, in seconds) -> (then asked for at most once per this many seconds)
DEFAULT_BACKOFF: tuple[tuple[float, float], ...] = ((0.0, 0.0), (24 * HOUR, 300.0), (7 * 24 * HOUR, HOUR),
                                                    (30 * 24 * HOUR, 6 * HOUR))


class MessageGone(PermanentChannelError):
    """Corner 2 no longer has the message (404: never had it or deleted it; 410: deleted)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Corner2Status:
    """One of Corner 2's own statuses: OPPRETTET (it has the message), SENDT (handed on), FEILET."""

    status: str
    timestamp: datetime | None
    description: str | None = None


@dataclass(frozen=True)
class IncomingMessage:
    """A message waiting at Corner 2 for us: in DPI 1.0 a receipt, its SBD as a signed JWT."""

    forretningsmelding: str
    download_url: str | None = None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Corner2Client:
    """One organisation's calls to Corner 2; `timeout` bounds every request (connect, each read, each write)."""

    def __init__(self, base_url: str, tokens: TokenSource, http: httpx.Client, timeout: float = DEFAULT_TIMEOUT_S,
                 page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.http = http
        self.timeout = timeout
        self.page_size = page_size

    def _request(self, what: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        return bearer_request(self.http, self.tokens, what, method, f"{self.base_url}{path}", headers=headers,
                              timeout=self.timeout, **kwargs)

    def send(self, forretningsmelding: str, dokumentpakke: Path | bytes, kanal: str | None = None) -> None:
        """POST the message; the 50 MB limit is checked before anything is sent (PermanentChannelError)."""
        size = len(dokumentpakke) if isinstance(dokumentpakke, bytes) else os.stat(dokumentpakke).st_size
        if size > MAX_DOKUMENTPAKKE_BYTES:
            raise PermanentChannelError(f"the dokumentpakke is {size} bytes, more than DPI's limit of "
                                        f"{MAX_DOKUMENTPAKKE_BYTES} bytes (50 MB); nothing was sent")
        what = "sending the message to Corner 2"
        params = {"kanal": kanal} if kanal else None
        with contextlib.ExitStack() as stack:
            # httpx rewinds a file part when it renders the body again (bearer_request's one retry after a 401).
            package = (io.BytesIO(dokumentpakke) if isinstance(dokumentpakke, bytes)
                       else stack.enter_context(open(dokumentpakke, "rb")))
            files = [("forretningsmelding", ("sbd.jwt", forretningsmelding.encode("ascii"), "application/jwt")),
                     ("dokumentpakke", ("asic.cms", package, "application/cms"))]
            response = self._request(what, "POST", "/messages/out", params=params, files=files)
        check_response(response, what)

    def statuses(self, message_id: str) -> list[Corner2Status]:
        """Corner 2's statuses of one message, oldest first; MessageGone when it no longer has the message."""
        what = f"reading the statuses of message {message_id} at Corner 2"
        response = self._request(what, "GET", f"/messages/out/{message_id}/statuses")
        if response.status_code in (404, 410):
            raise MessageGone(f"{what}: HTTP {response.status_code}: {server_words(response)}", response.status_code)
        check_response(response, what)
        try:
            answer = response.json()
        except ValueError as exc:
            raise PermanentChannelError(f"{what}: Corner 2's answer is not JSON") from exc
        if not isinstance(answer, list):
            raise PermanentChannelError(f"{what}: Corner 2's answer is not a list of statuses")
        found = [Corner2Status(str(item.get("status")), _time(item.get("timestamp")), item.get("beskrivelse"))
                 for item in answer if isinstance(item, dict) and item.get("status")]
        return sorted(found, key=lambda status: status.timestamp or datetime.min.replace(tzinfo=UTC))

    def already_sent(self, message_id: str) -> bool:
        """Whether Corner 2 has the message (an interrupted send that went through)."""
        try:
            self.statuses(message_id)
        except MessageGone as gone:
            return gone.status_code == 410
        return True

    def incoming(self, avsenderidentifikator: str | None = None, kanal: str | None = None) -> list[IncomingMessage]:
        """The messages (receipts) waiting for us, up to a page; mark each read once it is safely ours."""
        what = "listing incoming messages at Corner 2"
        params: dict[str, str | int] = {"page_size": self.page_size}
        if avsenderidentifikator:
            params["avsenderidentifikator"] = avsenderidentifikator
        if kanal:
            params["kanal"] = kanal
        response = check_response(self._request(what, "GET", "/messages/in", params=params), what)
        if response.status_code == 204 or not response.content:
            return []
        try:
            answer = response.json()
        except ValueError as exc:
            raise PermanentChannelError(f"{what}: Corner 2's answer is not JSON") from exc
        if not isinstance(answer, list):
            raise PermanentChannelError(f"{what}: Corner 2's answer is not a list of messages")
        return [IncomingMessage(str(item["forretningsmelding"]), item.get("downloadurl"))
                for item in answer if isinstance(item, dict) and item.get("forretningsmelding")]

    def mark_read(self, message_id: str) -> None:
        """Tell Corner 2 an incoming message is ours; one it no longer knows (404) counts as done."""
        what = f"marking incoming message {message_id} read at Corner 2"
        response = self._request(what, "POST", f"/messages/in/{message_id}/read")
        if response.status_code != 404:
            check_response(response, what)


def corner2_client(base_url: str, auth: Authorisation, http: httpx.Client, own_orgnr: str,
                   avsender: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> Corner2Client:
    """A client on the daemon's parts: `http` from gateway.outbound_http (proxy, TLS trust, User-Agent) and the
    DPI scope's Maskinporten tokens from `auth`. Sending for another organisation (`avsender`), the token names
    it as consumer_org, as the reference does; for ourselves it does not (Maskinporten refuses consumer_org equal
    to the client's own organisation for delegable scopes, networks.md §1)."""
    consumer_org = avsender if avsender and avsender != own_orgnr else None
    return Corner2Client(base_url, auth.maskinporten((DPI_SCOPE,), consumer_org=consumer_org), http, timeout)


def deleted_at_provider(gone: MessageGone) -> str:
    """ANNET's words for a message Corner 2 no longer has."""
    return (f"deleted at the provider: Corner 2 no longer has the message ({gone}); no further status can come, "
            "so the gateway has stopped asking for it")


def updates_from(message_id: str, statuses: Sequence[Corner2Status]) -> list[StatusUpdate]:
    """Our statuses from Corner 2's (as the reference maps them): SENDT (handed on to the receiver's access
    point) is MOTTATT, FEILET is FEIL; OPPRETTET adds nothing to the SENDT the gateway already has."""
    updates = []
    for status in statuses:
        if status.status == "SENDT":
            updates.append(StatusUpdate(message_id, "MOTTATT", status.timestamp,
                                        "Corner 2 has handed the message on to the receiver's access point"))
        elif status.status == "FEILET":
            words = status.description or "no reason given"
            updates.append(StatusUpdate(message_id, "FEIL", status.timestamp, f"Corner 2 could not deliver: {words}"))
    return updates


class StatusPolling:
    """Polls Corner 2 for open messages' statuses; see the module docstring for the rules it keeps.

    `poll` may be called from several threads at once for different messages (the status poller asks a batch
    in chunks side by side); a message already being asked for is left out of a second, overlapping call, so
    one message never has two polls on the wire."""

    def __init__(self, client: Corner2Client, clock: Clock | None = None,
                 backoff: tuple[tuple[float, float], ...] = DEFAULT_BACKOFF,
                 on_gone: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.clock = clock or SystemClock()
        self.backoff = backoff
        self.on_gone = on_gone
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._last_asked: dict[str, float] = {}
        self.overlaps_skipped = 0  # messages left out because a poll of them was still on the wire

    def _interval(self, age: float) -> float:
        interval = 0.0
        for at_least, every in self.backoff:
            if age >= at_least:
                interval = every
        return interval

    def _claim(self, sent: Sequence[SentMessage]) -> list[SentMessage]:
        """The messages due by their back-off (age counted from the send) and not being asked for already."""
        now = self.clock.now().timestamp()
        longest = max(every for _, every in self.backoff)
        claimed = []
        with self._lock:
            for message_id in [m for m, last in self._last_asked.items() if now - last > longest]:
                del self._last_asked[message_id]  # due anyway: forgetting it changes nothing
            for message in sent:
                if message.message_id in self._in_flight:
                    self.overlaps_skipped += 1
                    continue
                age = now - message.sent_at.timestamp() if message.sent_at else 0.0
                last = self._last_asked.get(message.message_id)
                if last is None or now - last >= self._interval(age):
                    self._in_flight.add(message.message_id)
                    self._last_asked[message.message_id] = now
                    claimed.append(message)
        return claimed

    def poll(self, sent: Sequence[SentMessage]) -> list[StatusUpdate]:
        """The updates for those of `sent` that are due. Fails (RetryableChannelError) only when every poll
        failed for a reason that may pass, or at once when Corner 2 asks us to wait."""
        claimed = self._claim(sent)
        try:
            return self._round(claimed)
        finally:
            with self._lock:
                self._in_flight.difference_update(message.message_id for message in claimed)

    def _round(self, due: list[SentMessage]) -> list[StatusUpdate]:
        return poll_each(due, self._status_of, "DPI")

    def _status_of(self, message: SentMessage) -> list[StatusUpdate]:
        try:
            statuses = self.client.statuses(message.message_id)
        except MessageGone as gone:
            with self._lock:
                self._last_asked.pop(message.message_id, None)
            if self.on_gone is not None:
                self.on_gone(message.message_id)
            return [StatusUpdate(message.message_id, "ANNET", None, deleted_at_provider(gone), ends_polling=True)]
        return updates_from(message.message_id, statuses)


class ReceiptPolling:
    """Takes the receipts waiting at Corner 2, a page at a time until none are left, one round at a time: a
    round asked for while another runs does nothing (two rounds would take the same receipts twice, the
    reference's lesson from its overlapping MPC polls). `handle` reads a receipt and returns the messageId to
    mark it read under, or None to leave it for a later round; `settle`, when given, is called once a page is
    read and before any of it is marked read (to write the receipts down: Corner 2 never offers them again)."""

    def __init__(self, client: Corner2Client, kanal: str | None = None, max_pages: int = 50) -> None:
        self.client = client
        self.kanal = kanal
        self.max_pages = max_pages
        self._running = threading.Lock()
        self.skipped_rounds = 0

    def poll(self, handle: Callable[[IncomingMessage], str | None],
             avsenderidentifikatorer: Sequence[str | None] = (None,),
             settle: Callable[[], None] | None = None) -> int:
        """Receipts handled and marked read this round (0 when the round overlapped another and was skipped)."""
        if not self._running.acquire(blocking=False):
            self.skipped_rounds += 1
            log.debug("DPI receipts: the previous round is still running; this one is skipped")
            return 0
        try:
            taken = 0
            for avsenderidentifikator in avsenderidentifikatorer:
                for _ in range(self.max_pages):
                    page = self.client.incoming(avsenderidentifikator, self.kanal)
                    marked = 0
                    read = [message_id for incoming in page if (message_id := handle(incoming)) is not None]
                    if settle is not None:
                        settle()
                    if read and len(page) < self.client.page_size:
                        read += self._came_meanwhile(page, handle, avsenderidentifikator, settle)
                    for message_id in dict.fromkeys(read):
                        self.client.mark_read(message_id)
                        marked += 1
                    taken += marked
                    if len(page) < self.client.page_size or not marked:
                        break  # the last page, or nothing on it could be taken: the rest waits for a later round
            return taken
        finally:
            self._running.release()

    def _came_meanwhile(self, page: list[IncomingMessage], handle: Callable[[IncomingMessage], str | None],
                        avsenderidentifikator: str | None, settle: Callable[[], None] | None) -> list[str]:
        """Corner 2 marks read every receipt of a letter it holds when the mark comes, also one that came after
        the page was listed (an open receipt moments after the delivery receipt, while a slow round verified and
        wrote down the page): such a receipt would be marked read unseen, and lost. Listed again before marking,
        what came meanwhile is taken first; only the moment between the last look and the marks is left."""
        seen = {incoming.forretningsmelding for incoming in page}
        read: list[str] = []
        for _ in range(3):
            again = [incoming for incoming in self.client.incoming(avsenderidentifikator, self.kanal)
                     if incoming.forretningsmelding not in seen]
            if not again:
                break
            seen.update(incoming.forretningsmelding for incoming in again)
            read += [message_id for incoming in again if (message_id := handle(incoming)) is not None]
            if settle is not None:
                settle()
        return read


__all__ = [
    "DPI_SCOPE",
    "MAX_DOKUMENTPAKKE_BYTES",
    "Corner2Client",
    "Corner2Status",
    "IncomingMessage",
    "MessageGone",
    "ReceiptPolling",
    "StatusPolling",
    "corner2_client",
    "deleted_at_provider",
    "updates_from",
]
