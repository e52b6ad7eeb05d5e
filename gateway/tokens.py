"""The HTTP error translation that every client shares, and the authorised request with one renewal.

Network trouble, 429 and 5xx become RetryableChannelError (with the server's Retry-After, and whether
it asked us to slow down); other 4xx become PermanentChannelError carrying the server's own words.
Tokens come from gateway.maskinporten (Maskinporten's grant) and gateway.altinn_tokens (the Altinn
exchange); both renew a refused token at most once.
"""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Any

import httpx

from gateway.errors import PermanentChannelError, RetryableChannelError

TokenSource = Callable[[], str]


@contextlib.contextmanager
def translated_http_errors(what: str) -> Iterator[None]:
    """Turn httpx's network errors into RetryableChannelError naming `what` we were doing."""
    try:
        yield
    except httpx.TransportError as exc:
        raise RetryableChannelError(f"{what}: network error ({type(exc).__name__}: {exc})") from exc


def server_words(response: httpx.Response) -> str:
    """The error text a peer gave: OAuth error, RFC 7807 problem, or the start of the body."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        if "error" in body:
            return ": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
        parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return str(body)[:300]


def check_response(response: httpx.Response, what: str) -> httpx.Response:
    """Return a 2xx response; raise the right channel error for anything else."""
    if response.is_success:
        return response
    words = server_words(response)
    message = f"{what}: HTTP {response.status_code} from {response.request.url.host}: {words}"
    if response.status_code in (408, 429) or response.status_code >= 500:  # 408: the request timed out there
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), time.time())
        if retry_after is not None:
            message = f"{message} (the server asks us to wait {retry_after:.0f} s)"
        raise RetryableChannelError(
            message, retry_after=retry_after, throttled=response.status_code in THROTTLING_STATUSES
        )
    raise PermanentChannelError(message)


THROTTLING_STATUSES = (429, 503)
MAX_RETRY_AFTER_S = 3600.0  # a server that asks for more is asked again within the hour


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """Retry-After (RFC 9110 §10.2.3) as seconds from `now`: delay-seconds or an HTTP-date; None when absent
    or unreadable. A date in the past means now (0); anything past an hour is capped at an hour."""
    if not header:
        return None
    text = header.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # an HTTP-date is GMT
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def bearer_request(
    http: httpx.Client,
    tokens: TokenSource,
    what: str,
    method: str,
    url: str,
    **kwargs: Any,
) -> httpx.Response:
    """One authorised request; on 401 with a renewable token source, at most one retry with a new token.

    The response is returned unchecked (callers decide what 401 and 404 mean); network errors are
    translated. Not for streamed bodies that cannot be sent twice: use `tokens` directly there.
    """
    headers = dict(kwargs.pop("headers", None) or {})
    for attempt in range(2):
        token = tokens()
        headers["Authorization"] = f"Bearer {token}"
        with translated_http_errors(what):
            response = http.request(method, url, headers=headers, **kwargs)
        if response.status_code == 401 and attempt == 0 and worth_a_new_token(tokens, token):
            continue
        return response
    return response


def worth_a_new_token(tokens: TokenSource, refused: str) -> bool:
    """After a 401 to `refused`: whether to try once more with a new token (see renew_after_refusal)."""
    renew = getattr(tokens, "renew_after_refusal", None)
    return renew is not None and bool(renew(refused))
