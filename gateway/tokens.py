"""Access tokens from a Maskinporten-like token endpoint, and the HTTP error translation the
clients that carry them share.

`TokenClient` makes a JWT-bearer grant: a short-lived RS256 JWT signed with the organisation's
enterprise key, the certificate chain in the `x5c` header (leaf first). The access token is cached
until shortly before it expires. Network trouble, 429 and 5xx become RetryableChannelError (with the
server's Retry-After, and whether it asked us to slow down); other 4xx become PermanentChannelError
carrying the server's own words.

A grant may name an Altinn system user (`authorization_details` of type `urn:altinn:systemuser`, the
system user's organisation, optionally its external reference): Digdir's DPO resource admits only
system users. `TokenClient.for_system_user` gives such a client beside the plain one, same key.

A 401 means "no access" far more often than "token expired": a request refused with a token is sent
again with a new one at most once, and a token that was itself fetched because of a refusal is not
renewed for another: a refusal costs at most one extra grant per token lifetime, not one per call.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.clock import Clock, SystemClock
from gateway.errors import PermanentChannelError, RetryableChannelError

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 100  # Maskinporten accepts at most 120 s
SYSTEM_USER_TYPE = "urn:altinn:systemuser"
ORG_AUTHORITY = "iso6523-actorid-upis"

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


class TokenClient:
    """Fetches and caches an access token; thread-safe (one grant at a time)."""

    def __init__(
        self,
        token_url: str,
        audience: str,
        client_id: str,
        private_key: PrivateKeyTypes,
        certificate_chain: Sequence[x509.Certificate],
        scopes: Sequence[str],
        http: httpx.Client,
        clock: Clock | None = None,
        leeway_s: int = 30,
        authorization_details: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        if not certificate_chain:
            raise ValueError("the certificate chain must hold at least the enterprise certificate")
        self.token_url = token_url
        self.audience = audience
        self.client_id = client_id
        self.scopes = list(scopes)
        self.http = http
        self.clock = clock or SystemClock()
        self.leeway_s = leeway_s
        self.authorization_details = [dict(entry) for entry in authorization_details or ()]
        self._private_key = private_key
        self._chain = list(certificate_chain)
        self._x5c = [
            base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
            for certificate in certificate_chain
        ]
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until = 0.0  # on the monotonic clock
        self._is_renewal = False  # the cached token was fetched because its predecessor was refused
        self._renewing = False
        self._system_users: dict[tuple[str, str | None, tuple[str, ...]], TokenClient] = {}
        self.grants_made = 0

    def for_system_user(self, orgnr: str, external_ref: str | None = None,
                        scopes: Sequence[str] | None = None) -> TokenClient:
        """A client whose grants name the system user of `orgnr` (same key, endpoint and HTTP pool).

        One per system user and scopes, kept: every caller shares its cached token.
        """
        chosen = tuple(scopes if scopes is not None else self.scopes)
        key = (orgnr, external_ref, chosen)
        with self._lock:
            sibling = self._system_users.get(key)
            if sibling is None:
                detail: dict[str, Any] = {
                    "type": SYSTEM_USER_TYPE,
                    "systemuser_org": {"authority": ORG_AUTHORITY, "ID": f"0192:{orgnr}"},
                }
                if external_ref:
                    detail["externalRef"] = external_ref
                sibling = TokenClient(
                    self.token_url, self.audience, self.client_id, self._private_key, self._chain, chosen,
                    self.http, self.clock, self.leeway_s, authorization_details=[detail],
                )
                self._system_users[key] = sibling
            return sibling

    def _assertion(self) -> str:
        issued_at = int(self.clock.now().timestamp())
        claims = {
            "aud": self.audience,
            "iss": self.client_id,
            "scope": " ".join(self.scopes),
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        if self.authorization_details:
            claims["authorization_details"] = self.authorization_details
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"x5c": self._x5c})  # type: ignore[arg-type]

    def access_token(self) -> str:
        with self._lock:
            if self._token is not None and self.clock.monotonic() < self._valid_until:
                return self._token
            what = f"getting an access token from {self.token_url}"
            with translated_http_errors(what):
                response = self.http.post(
                    self.token_url,
                    data={"grant_type": JWT_BEARER_GRANT, "assertion": self._assertion()},
                    headers={"Accept": "application/json"},
                )
            self.grants_made += 1
            check_response(response, what)
            try:
                body = response.json()
                token = str(body["access_token"])
                expires_in = float(body.get("expires_in", 60))
            except (ValueError, KeyError, TypeError) as exc:
                raise RetryableChannelError(f"{what}: the answer holds no access_token") from exc
            self._token = token
            self._is_renewal, self._renewing = self._renewing, False
            self._valid_until = self.clock.monotonic() + max(expires_in - self.leeway_s, 0.0)
            return token

    def invalidate(self) -> None:
        """Forget the cached token: the next call makes a new grant."""
        with self._lock:
            self._token = None

    def renew_after_refusal(self, refused: str) -> bool:
        """A peer answered 401 to `refused`: whether a new token is worth one more try.

        Yes when another thread has fetched a newer token meanwhile, or when the refused one may have
        expired or been revoked (it is then forgotten). No when it was itself the new token fetched
        after a refusal: the refusal is about access, and yet another token would be refused the same way.
        """
        with self._lock:
            if refused != self._token:
                return True
            if self._is_renewal:
                return False
            self._token = None
            self._renewing = True
            return True

    def __call__(self) -> str:
        return self.access_token()


def bearer_request(
    http: httpx.Client,
    tokens: TokenClient | TokenSource,
    what: str,
    method: str,
    url: str,
    **kwargs: Any,
) -> httpx.Response:
    """One authorised request; on 401 with a TokenClient, at most one retry with a new token.

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


def worth_a_new_token(tokens: TokenClient | TokenSource, refused: str) -> bool:
    """After a 401 to `refused`: whether to try once more with a new token (see renew_after_refusal)."""
    return isinstance(tokens, TokenClient) and tokens.renew_after_refusal(refused)
