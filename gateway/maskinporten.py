"""Maskinporten's JWT-bearer grant, exactly as Digdir documents it, and one cached token per scope set.

The grant is an RS256 JWT signed with the organisation's enterprise key: only the leaf certificate in
`x5c` (or a `kid` naming a key registered on the client, for synthetic test organisations), `aud` the
issuer identifier (trailing slash included), `iss` the client id, a fresh `jti`, `exp` 120 s or less after
`iat`, and no claim outside Maskinporten's list (`scope`, optionally `consumer_org`, and
`authorization_details` for an Altinn system user). A `TokenClient` holds one scope set (and system user,
consumer_org); `Maskinporten.tokens` keeps one per set, so each use asks for exactly its scopes, as the
reference integration point does.

Maskinporten's refusals (`MP-1xx`, `MP-2xx`, `MP-3xx`) become `GrantRefused`: a retryable error (messages
wait, the channel pauses a minute) whose one line names the code and what to fix. A 401 from a service
means "no access" far more often than "token expired": a refused token is renewed at most once, and a
token that was itself fetched because of a refusal is not renewed for another.
"""

from __future__ import annotations

import abc
import base64
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.clock import Clock, SystemClock
from gateway.errors import RetryableChannelError
from gateway.tokens import check_response, translated_http_errors

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 120  # Maskinporten's most: exp - iat <= 120 s
SYSTEM_USER_TYPE = "urn:altinn:systemuser"
ORG_AUTHORITY = "iso6523-actorid-upis"
# A refused grant pauses the channel: the same grant would be refused again at once (network.refusal_pause_seconds).
REFUSAL_PAUSE_S = 60.0
_MP_CODE = re.compile(r"\bMP-\d{3}\b")


def default_client_id(orgnr: str) -> str:
    """The reference integration point's default client id (difi.move.oidc.clientId), used on the sandbox."""
    return f"MOVE_IP_{orgnr}"


def default_system_user_name(orgnr: str) -> str:
    """The reference's default system-user name (systemUser.name), which Altinn keeps as its externalRef."""
    return f"{orgnr}_integrasjonspunkt_systembruker_{orgnr}"


def issuer_of(token_url: str) -> str:
    """Maskinporten's issuer identifier for a token endpoint: `https://test.maskinporten.no/token` ->
    `https://test.maskinporten.no/` (the grant's `aud`)."""
    return token_url.rstrip("/").rsplit("/", 1)[0] + "/"


# What to do about each of Maskinporten's error codes (Digdir's troubleshooting page, in our words).
FIXES: dict[str, str] = {
    "MP-011": "the grant is malformed or holds a claim Maskinporten does not list; this is a gateway fault, "
              "report it",
    "MP-012": "the grant was used before (same jti); this is a gateway fault, report it",
    "MP-100": "Maskinporten does not know the client id {client_id} in this environment: set network.client_id "
              "to your Maskinporten client's id from Samarbeidsportalen (test and production clients differ)",
    "MP-110": "the grant's aud ({audience}) is not Maskinporten's issuer: remove network.token_audience or set it "
              "to the issuer exactly, trailing slash included",
    "MP-120": "Maskinporten refuses the certificate: a production certificate in test, a test certificate in "
              "production, or not a Buypass/Commfides enterprise certificate; check keystore and "
              "network.environment",
    "MP-121": "the key registered on the client has expired (keys live one year): register a new key in "
              "Samarbeidsportalen",
    "MP-122": "the certificate's organisation number is not the client's: use the keystore of the organisation "
              "that owns client {client_id}",
    "MP-123": "the grant's x5c is not a list; this is a gateway fault, report it",
    "MP-124": "the grant's signature does not match its certificate: the keystore's key and certificate do not "
              "belong together",
    "MP-130": "the grant is expired or dated in the future: check this server's clock (NTP); Maskinporten allows "
              "10 s",
    "MP-200": "the client lacks the scope {scopes}: add it to client {client_id} in Samarbeidsportalen (Digdir "
              "opens the eformidling and Altinn scopes, KS opens ks:fiks)",
    "MP-201": "the client's integration type does not allow {scopes}: make a Maskinporten client of the type "
              "the scope needs",
    "MP-250": "the organisation lacks access to {scopes}: ask the API's owner for access",
    "MP-251": "the delegation for {scopes} is missing: have the organisation delegate it in Altinn",
    "MP-301": "the system user request (authorization_details) is malformed; check channels.dpo.system_user_org",
    "MP-302": "Altinn has no approved system user for this system and organisation: approve the system-user "
              "request (its confirmUrl) in Altinn, and check channels.dpo.system_user_org",
    "MP-303": "the system user's externalRef does not match: set channels.dpo.system_user_external_ref to the "
              "name the system user was created with",
}


class GrantRefused(RetryableChannelError):
    """Maskinporten refused our grant; `code` is its MP code (or its OAuth error when it gave none)."""

    def __init__(self, message: str, code: str, pause_s: float = REFUSAL_PAUSE_S) -> None:
        super().__init__(message, retry_after=pause_s, throttled=True)
        self.code = code


@dataclass(frozen=True)
class GrantKey:
    """What signs our grants: the enterprise key with its leaf certificate (x5c), or a registered key (kid)."""

    private_key: PrivateKeyTypes
    certificate: x509.Certificate | None = None
    key_id: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate is None) == (self.key_id is None):
            raise ValueError("a grant key names either its certificate (x5c) or its registered key id (kid)")

    @property
    def header(self) -> dict[str, Any]:
        if self.key_id is not None:
            return {"kid": self.key_id}
        assert self.certificate is not None
        return {"x5c": [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")]}


@dataclass(frozen=True)
class SystemUser:
    """An Altinn system user a grant names: its organisation and its external reference."""

    orgnr: str
    external_ref: str

    def authorization_details(self) -> list[dict[str, Any]]:
        return [{
            "type": SYSTEM_USER_TYPE,
            "systemuser_org": {"authority": ORG_AUTHORITY, "ID": f"0192:{self.orgnr}"},
            "externalRef": self.external_ref,
        }]


class CachedToken(abc.ABC):
    """A token kept until shortly before it ends, one fetch at a time, renewed at most once after a refusal.

    Subclasses fetch in `access_token` under `_lock`, using `_cached()` and `_keep()`.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until = 0.0  # on the monotonic clock
        self._is_renewal = False  # the cached token was fetched because its predecessor was refused
        self._renewing = False

    def _cached(self) -> str | None:
        if self._token is not None and self.clock.monotonic() < self._valid_until:
            return self._token
        return None

    def _keep(self, token: str, seconds: float) -> str:
        self._token = token
        self._is_renewal, self._renewing = self._renewing, False
        self._valid_until = self.clock.monotonic() + seconds
        return token

    @abc.abstractmethod
    def access_token(self) -> str:
        """The cached token, or a new one fetched under `_lock`."""

    def invalidate(self) -> None:
        """Forget the cached token: the next call fetches a new one."""
        with self._lock:
            self._token = None

    def renew_after_refusal(self, refused: str) -> bool:
        """A service answered 401 to `refused`: whether a new token is worth one more try.

        Yes when another thread has fetched a newer token meanwhile, or when the refused one may have
        expired or been revoked (it is then forgotten). No when it was itself fetched after a refusal.
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


class TokenClient(CachedToken):
    """One scope set's access token from Maskinporten, cached until shortly before it expires; thread-safe."""

    def __init__(
        self,
        token_url: str,
        audience: str,
        client_id: str,
        key: GrantKey,
        scopes: Sequence[str],
        http: httpx.Client,
        clock: Clock | None = None,
        leeway_s: int = 30,  # 120 s tokens kept 90 s, as the reference keeps them
        system_user: SystemUser | None = None,
        consumer_org: str | None = None,
        refusal_pause_s: float = REFUSAL_PAUSE_S,
    ) -> None:
        super().__init__(clock)
        self.token_url = token_url
        self.audience = audience
        self.client_id = client_id
        self.key = key
        self.scopes = tuple(scopes)
        self.http = http
        self.leeway_s = leeway_s
        self.system_user = system_user
        self.consumer_org = consumer_org
        self.refusal_pause_s = refusal_pause_s
        self.grants_made = 0

    def assertion(self) -> str:
        """A new signed grant (a fresh jti every time)."""
        issued_at = int(self.clock.now().timestamp())
        claims: dict[str, Any] = {
            "aud": self.audience,
            "iss": self.client_id,
            "scope": " ".join(self.scopes),
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        if self.consumer_org:
            claims["consumer_org"] = self.consumer_org
        if self.system_user is not None:
            claims["authorization_details"] = self.system_user.authorization_details()
        return jwt.encode(claims, self.key.private_key, algorithm="RS256", headers=self.key.header)  # type: ignore[arg-type]

    def access_token(self) -> str:
        with self._lock:
            cached = self._cached()
            if cached is not None:
                return cached
            what = f"getting a Maskinporten token for {' '.join(self.scopes)} from {self.token_url}"
            with translated_http_errors(what):
                response = self.http.post(
                    self.token_url,
                    data={"grant_type": JWT_BEARER_GRANT, "assertion": self.assertion()},
                    headers={"Accept": "application/json"},
                )
            self.grants_made += 1
            if response.status_code in (400, 401, 403):
                raise self._refusal(response, what)
            check_response(response, what)
            try:
                body = response.json()
                token = str(body["access_token"])
                expires_in = float(body.get("expires_in", 60))
            except (ValueError, KeyError, TypeError) as exc:
                raise RetryableChannelError(f"{what}: the answer holds no access_token") from exc
            return self._keep(token, max(expires_in - self.leeway_s, 0.0))

    def _refusal(self, response: httpx.Response, what: str) -> GrantRefused:
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        found = _MP_CODE.search(f"{error} {description}")
        code = found.group(0) if found else (error or f"HTTP {response.status_code}")
        fix = FIXES.get(code, "").format(client_id=self.client_id, audience=self.audience, scopes=" ".join(self.scopes))
        words = description or error or response.reason_phrase
        said = words if code in words else f"{code}: {words}"
        message = f"{what}: Maskinporten refused the grant ({said})"
        return GrantRefused(f"{message}; {fix}" if fix else message, code, self.refusal_pause_s)


class Maskinporten:
    """The organisation's Maskinporten client: one `TokenClient` per scope set, system user and consumer_org."""

    def __init__(self, token_url: str, audience: str, client_id: str, key: GrantKey, http: httpx.Client,
                 clock: Clock | None = None, refusal_pause_s: float = REFUSAL_PAUSE_S) -> None:
        self.token_url = token_url
        self.audience = audience
        self.client_id = client_id
        self.key = key
        self.http = http
        self.clock = clock or SystemClock()
        self.refusal_pause_s = refusal_pause_s
        self._lock = threading.Lock()
        self._clients: dict[tuple[Any, ...], TokenClient] = {}

    def tokens(self, scopes: Sequence[str], system_user: SystemUser | None = None,
               consumer_org: str | None = None, key: GrantKey | None = None) -> TokenClient:
        chosen_key = key or self.key
        cache_key = (tuple(scopes), system_user, consumer_org, id(chosen_key))
        with self._lock:
            client = self._clients.get(cache_key)
            if client is None:
                client = TokenClient(self.token_url, self.audience, self.client_id, chosen_key, scopes, self.http,
                                     self.clock, system_user=system_user, consumer_org=consumer_org,
                                     refusal_pause_s=self.refusal_pause_s)
                self._clients[cache_key] = client
            return client

    @property
    def grants_made(self) -> int:
        with self._lock:
            return sum(client.grants_made for client in self._clients.values())
