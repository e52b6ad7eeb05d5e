"""HTTP clients for KS SvarUt (REST v2, sending) and SvarInn (mottaksservice v1, receiving).

SvarUt: `base_url` is the API root (`https://svarut.ks.no/api` in production, `<sandbox>/svarut/api` on
loopback); every call carries a Maskinporten token (scope `ks:fiks`) and the Fiks integration's id and
password (`IntegrasjonId`, `IntegrasjonPassord` headers), and acts for one account (`kontoId`).
SvarInn: `base_url` is `https://svarut.ks.no/tjenester/svarinn`; HTTP Basic with the receiving
system's (mottakersystem) user name and service password. Errors: network, 408, 429 and 5xx are
RetryableChannelError (with KS's Retry-After, and whether it asked us to slow down); other answers
PermanentChannelError with KS's own words, and a status search answered 404 or 410 is
ForsendelseNotFound. Secrets never reach a log line or an error text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from gateway.errors import PermanentChannelError, RetryableChannelError, SecurityError
from gateway.tokens import (
    THROTTLING_STATUSES,
    TokenSource,
    retry_after_seconds,
    translated_http_errors,
)

log = logging.getLogger(__name__)

FIKS_SCOPE = "ks:fiks"
CHUNK_SIZE = 1 << 20
# status-sok takes a list of ids; KS documents no limit, so we keep each request modest.
MAX_IDS_PER_STATUS_SEARCH = 500
SEND_TIMEOUT = httpx.Timeout(30.0, read=16 * 60.0, write=16 * 60.0)  # KS: allow 16 minutes for large sends


GONE_STATUSES = (404, 410)


class ForsendelseNotFound(PermanentChannelError):
    """SvarUt answered a status search with 404 or 410: it knows (one of) the forsendelser asked for no more."""


@dataclass(frozen=True)
class UploadDocument:
    """One document part of a send: its name in the forsendelse and the (encrypted) bytes or file."""

    file_name: str
    source: Path | bytes


@dataclass(frozen=True)
class SvarUtCredentials:
    account_id: str  # kontoId
    integration_id: str
    integration_password: str

    def __repr__(self) -> str:  # never show the password
        return f"SvarUtCredentials(account_id={self.account_id!r}, integration_id={self.integration_id!r})"


class SvarUtClient:
    def __init__(self, base_url: str, credentials: SvarUtCredentials, tokens: TokenSource,
                 http: httpx.Client, lookup_tokens: TokenSource | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.tokens = tokens  # sending
        self.lookup_tokens = lookup_tokens or tokens  # status search and reference look-ups (consumer_org set)
        self.http = http

    @property
    def _account_url(self) -> str:
        return f"{self.base_url}/v2/kontoer/{self.credentials.account_id}/forsendelser"

    def _headers(self, tokens: TokenSource | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {(tokens or self.tokens)()}",
            "IntegrasjonId": self.credentials.integration_id,
            "IntegrasjonPassord": self.credentials.integration_password,
            "Accept": "application/json",
        }

    def _request(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A look-up (status search, reference) with the lookup tokens, sent once more with a new token after a
        401; the answer unchecked."""
        for attempt in range(2):
            with translated_http_errors(what):
                response = self.http.request(method, url, headers=self._headers(self.lookup_tokens), **kwargs)
            if response.status_code == 401 and attempt == 0 and _invalidated(self.lookup_tokens):
                continue
            return response
        raise PermanentChannelError(f"{what}: SvarUt refused the access token twice")

    def send(self, forsendelse: dict[str, Any], documents: Sequence[UploadDocument]) -> str:
        """POST the forsendelse and its documents (streamed from disk); returns SvarUt's forsendelseId."""
        what = f"sending forsendelse {forsendelse.get('eksternReferanse')} to SvarUt"
        with contextlib.ExitStack() as stack:
            parts: list[tuple[str, Any]] = [
                ("forsendelse", (None, json.dumps(forsendelse, ensure_ascii=False).encode(), "application/json")),
            ]
            for index, document in enumerate(documents):
                body = document.source if isinstance(document.source, bytes) else stack.enter_context(
                    open(document.source, "rb"))
                parts.append((f"dokument{index}", (document.file_name, body, "application/octet-stream")))
            # A 401 means the token expired on the way: the files are opened again from the start.
            for attempt in range(2):
                for _name, (_file, body, _mime) in parts:
                    if hasattr(body, "seek"):
                        body.seek(0)
                with translated_http_errors(what):
                    response = self.http.post(self._account_url, headers=self._headers(), files=parts,
                                              timeout=SEND_TIMEOUT)
                if response.status_code == 401 and attempt == 0 and _invalidated(self.tokens):
                    continue
                check_response(response, what)
                return _id_of(response, what)
        raise PermanentChannelError(f"{what}: SvarUt refused the access token twice")

    def find_by_external_reference(self, external_reference: str) -> list[str]:
        """The forsendelseIds of this account sent with `eksternReferanse` (a send cut off by a crash)."""
        what = f"looking up forsendelser with ekstern referanse {external_reference} in SvarUt"
        response = check_response(
            self._request(what, "GET", f"{self._account_url}/", params={"eksternRef": external_reference}), what
        )
        body = _json(response, what)
        ids = body.get("forsendelseIds") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            raise RetryableChannelError(f"{what}: the answer holds no forsendelseIds")
        return [str(forsendelse_id) for forsendelse_id in ids]

    def status_search(self, forsendelse_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The current state of each forsendelse (one request per MAX_IDS_PER_STATUS_SEARCH ids). SvarUt leaves
        out ids it does not know; an answer of 404 or 410 is ForsendelseNotFound."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(forsendelse_ids), MAX_IDS_PER_STATUS_SEARCH):
            chunk = list(forsendelse_ids[start:start + MAX_IDS_PER_STATUS_SEARCH])
            what = f"searching SvarUt for the status of {len(chunk)} forsendelse(r)"
            response = self._request(what, "POST", f"{self._account_url}/status-sok",
                                     json={"forsendelseIds": chunk})
            if response.status_code in GONE_STATUSES:
                raise ForsendelseNotFound(f"{what}: HTTP {response.status_code} from {response.request.url.host}: "
                                          f"{_words(response)}")
            body = _json(check_response(response, what), what)
            statuses = body.get("statuser") if isinstance(body, dict) else None
            if not isinstance(statuses, list):
                raise RetryableChannelError(f"{what}: the answer holds no statuser")
            found.extend(entry for entry in statuses if isinstance(entry, dict))
        return found


@dataclass(frozen=True)
class SvarInnCredentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"SvarInnCredentials(username={self.username!r})"


class SvarInnClient:
    def __init__(self, base_url: str, credentials: SvarInnCredentials, http: httpx.Client) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = httpx.BasicAuth(credentials.username, credentials.password)
        self.http = http

    def new_forsendelser(self) -> list[dict[str, Any]]:
        """The forsendelser waiting for this receiving system (not yet acknowledged)."""
        what = "listing new forsendelser in SvarInn"
        with translated_http_errors(what):
            response = self.http.get(f"{self.base_url}/mottaker/hentNyeForsendelser", auth=self.auth,
                                     headers={"Accept": "application/json"})
        check_response(response, what)
        body = _json(response, what)
        if not isinstance(body, list):
            raise RetryableChannelError(f"{what}: the answer is not a list of forsendelser")
        return [entry for entry in body if isinstance(entry, dict)]

    def download(self, forsendelse_id: str, target: BinaryIO, max_bytes: int) -> int:
        """Stream the forsendelse's (encrypted) file into `target`; refuse one larger than `max_bytes`.

        The URL is built from our own SvarInn address, never taken from the listing: our password
        goes only where we configured it to go.
        """
        what = f"downloading forsendelse {forsendelse_id} from SvarInn"
        url = f"{self.base_url}/forsendelse/{forsendelse_id}"
        with translated_http_errors(what), self.http.stream("GET", url, auth=self.auth) as response:
            if not response.is_success:
                response.read()
                check_response(response, what)
            written = 0
            for chunk in response.iter_bytes(CHUNK_SIZE):
                written += len(chunk)
                if written > max_bytes:
                    raise SecurityError(f"forsendelse {forsendelse_id} is larger than {max_bytes} bytes, more "
                                        "than DPF carries; it was not downloaded")
                target.write(chunk)
            return written

    def acknowledge(self, forsendelse_id: str) -> None:
        """kvitterMottak: the forsendelse is ours; SvarUt marks it read and offers it no more."""
        what = f"acknowledging forsendelse {forsendelse_id} in SvarInn (kvitterMottak)"
        with translated_http_errors(what):
            response = self.http.post(f"{self.base_url}/kvitterMottak/forsendelse/{forsendelse_id}", auth=self.auth)
        check_response(response, what)

    def reject(self, forsendelse_id: str, reason: str, permanent: bool = True) -> None:
        """mottakFeilet: we cannot take it; with `permanent` SvarUt sends it on by another channel."""
        what = f"reporting forsendelse {forsendelse_id} as not received in SvarInn (mottakFeilet)"
        with translated_http_errors(what):
            response = self.http.post(f"{self.base_url}/mottakFeilet/forsendelse/{forsendelse_id}", auth=self.auth,
                                      json={"feilmelding": reason[:1000], "permanent": permanent})
        check_response(response, what)


def _invalidated(tokens: TokenSource) -> bool:
    """Forget a renewable source's token (a 401): whether there is a new one to try."""
    invalidate = getattr(tokens, "invalidate", None)
    if invalidate is None:
        return False
    invalidate()
    return True


def check_response(response: httpx.Response, what: str) -> httpx.Response:
    """A 2xx response, or the channel error with KS's words (its ErrorMessage `message`); a retryable one
    carries KS's Retry-After and whether it asked us to slow down (429, 503)."""
    if response.is_success:
        return response
    message = f"{what}: HTTP {response.status_code} from {response.request.url.host}: {_words(response)}"
    if response.status_code in (408, 429) or response.status_code >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), time.time())
        if retry_after is not None:
            message = f"{message} (the server asks us to wait {retry_after:.0f} s)"
        raise RetryableChannelError(message, retry_after=retry_after,
                                    throttled=response.status_code in THROTTLING_STATUSES)
    raise PermanentChannelError(message)


def _words(response: httpx.Response) -> str:
    """KS's words in an error answer: its ErrorMessage `message`, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:300]
    return response.text[:300].strip() or response.reason_phrase


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise RetryableChannelError(f"{what}: the answer is not JSON") from exc


def _id_of(response: httpx.Response, what: str) -> str:
    body = _json(response, what)
    if not isinstance(body, dict) or not body.get("id"):
        raise RetryableChannelError(f"{what}: SvarUt's answer holds no forsendelse id")
    return str(body["id"])
