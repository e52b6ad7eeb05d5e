"""Access tokens on the sandbox network: Maskinporten tokens from the token endpoint, Altinn tokens from the
Altinn platform's exchange, each checked by the apps that take it.

The service registry and SvarUt take Maskinporten tokens; the broker and the correspondence service take
only Altinn tokens, as the real ones do: a Maskinporten token there is a 401 that says to exchange it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.clock import Clock
from gateway.sandbox.signing import SandboxSigningKey

ACCESS_TOKEN_LIFETIME_S = 120
ALTINN_TOKEN_LIFETIME_S = 30 * 60
MASKINPORTEN = "Maskinporten"
ALTINN = "Altinn"
ORG_AUTHORITY = "iso6523-actorid-upis"
SYSTEM_USER_TYPE = "urn:altinn:systemuser"
_SYSTEM_USER_NAMESPACE = uuid.UUID("0b7d6f2e-5c1a-4e8b-9a43-7d2f1c9e6a15")


def sandbox_exchange_url(token_url: str) -> str:
    """The sandbox's Altinn exchange beside its token endpoint (`<url>/token/token`)."""
    root = token_url.rstrip("/").removesuffix("/token/token")
    return f"{root}/authentication/api/v1/exchange/maskinporten"


@dataclass(frozen=True)
class Caller:
    """Who a valid access token speaks for: the client's organisation, and the system user it names."""

    orgnr: str
    scopes: frozenset[str]
    client_id: str
    system_user_org: str | None = None  # the organisation of the Altinn system user, when the token names one
    kind: str = MASKINPORTEN  # who issued the token: MASKINPORTEN, or ALTINN (exchanged)
    token: str = ""  # the token itself, for the exchange
    # Delegated (consumer_org): the client's own organisation, which acts for `orgnr` (the token's `supplier`)
    supplier: str | None = None

    @property
    def party(self) -> str:
        """The organisation Altinn acts for: the system user's when there is one (as the real broker reads it)."""
        return self.system_user_org or self.orgnr


class Unauthorised(Exception):
    """The request carries no usable access token (401) or lacks a scope (403)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class AccessTokens:
    """Issues and checks the sandbox's access tokens (JWTs signed with the sandbox key)."""

    def __init__(self, signing_key: SandboxSigningKey, issuer: str, clock: Clock, altinn_issuer: str = "") -> None:
        self.signing_key = signing_key
        self.issuer = issuer
        self.altinn_issuer = altinn_issuer
        self.clock = clock
        self._verified: dict[str, tuple[Caller, float]] = {}
        self.exchanges: dict[str, int] = {}  # orgnr -> Altinn tokens issued by exchange

    def issue(self, orgnr: str, scopes: list[str], client_id: str,
              system_user_org: str | None = None, consumer_org: str | None = None) -> tuple[str, int]:
        """A token for client `orgnr`; with `consumer_org` (another organisation's) a delegated one, shaped as
        Maskinporten's: `consumer` that organisation, `supplier` the client's."""
        now = int(self.clock.now().timestamp())
        delegated = consumer_org if consumer_org and consumer_org != orgnr else None
        claims: dict[str, object] = {
            "iss": self.issuer,
            "client_id": client_id,
            "consumer": {"authority": ORG_AUTHORITY, "ID": f"0192:{delegated or orgnr}"},
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + ACCESS_TOKEN_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        if delegated:
            claims["supplier"] = {"authority": ORG_AUTHORITY, "ID": f"0192:{orgnr}"}
        if system_user_org:
            # The shape Maskinporten gives a system-user token (Altinn's docs show it).
            claims["authorization_details"] = [{
                "type": SYSTEM_USER_TYPE,
                "systemuser_org": {"authority": ORG_AUTHORITY, "ID": f"0192:{system_user_org}"},
                "systemuser_id": [str(uuid.uuid5(_SYSTEM_USER_NAMESPACE, f"{orgnr}/{system_user_org}"))],
                "system_id": f"{orgnr}_integrasjonspunkt",
            }]
        return self.signing_key.sign_claims(claims), ACCESS_TOKEN_LIFETIME_S

    def exchange(self, caller: Caller) -> tuple[str, int]:
        """An Altinn token for a Maskinporten token's caller (Altinn's exchange/maskinporten)."""
        now = int(self.clock.now().timestamp())
        claims: dict[str, object] = {
            "iss": self.altinn_issuer,
            "client_id": caller.client_id,
            "consumer": {"authority": ORG_AUTHORITY, "ID": f"0192:{caller.orgnr}"},
            "urn:altinn:orgNumber": caller.orgnr,
            "urn:altinn:authenticatemethod": "maskinporten",
            "urn:altinn:authlevel": 3,
            "scope": " ".join(sorted(caller.scopes)),
            "iat": now,
            "exp": now + ALTINN_TOKEN_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        if caller.system_user_org:
            claims["authorization_details"] = {
                "type": SYSTEM_USER_TYPE,
                "systemuser_org": {"authority": ORG_AUTHORITY, "ID": f"0192:{caller.system_user_org}"},
                "systemuser_id": [str(uuid.uuid5(_SYSTEM_USER_NAMESPACE, f"{caller.orgnr}/{caller.system_user_org}"))],
            }
        self.exchanges[caller.orgnr] = self.exchanges.get(caller.orgnr, 0) + 1
        return self.signing_key.sign_claims(claims), ALTINN_TOKEN_LIFETIME_S

    def verify(self, token: str) -> Caller:
        """The caller a token names; a token's signature is checked once, its expiry on every call."""
        cached = self._verified.get(token)
        if cached is not None:
            caller, expires = cached
            if expires <= self.clock.now().timestamp():
                raise Unauthorised(401, "the access token has expired; fetch a new one")
            return caller
        caller, expires = self._verify_signed(token)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (caller, expires)
        return caller

    def _verify_signed(self, token: str) -> tuple[Caller, float]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.signing_key.kid:
                raise Unauthorised(401, "the access token was not issued by this token endpoint")
            claims = jwt.decode(
                token,
                self.signing_key.private_key.public_key(),
                algorithms=["RS256"],
                issuer=[self.issuer, self.altinn_issuer] if self.altinn_issuer else self.issuer,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "require": ["exp", "iss", "consumer"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorised(401, f"the access token is not valid: {exc}") from exc
        if int(claims["exp"]) <= self.clock.now().timestamp():
            raise Unauthorised(401, "the access token has expired; fetch a new one")
        consumer_id = str(claims["consumer"].get("ID", ""))
        system_user_org = None
        details = claims.get("authorization_details") or []
        for detail in details if isinstance(details, list) else [details]:
            if isinstance(detail, dict) and detail.get("type") == SYSTEM_USER_TYPE:
                system_user_org = str((detail.get("systemuser_org") or {}).get("ID", "")).removeprefix("0192:")
        caller = Caller(
            orgnr=consumer_id.removeprefix("0192:"),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            client_id=str(claims.get("client_id", "")),
            system_user_org=system_user_org or None,
            kind=ALTINN if claims["iss"] == self.altinn_issuer else MASKINPORTEN,
            token=token,
            supplier=str((claims.get("supplier") or {}).get("ID", "")).removeprefix("0192:") or None,
        )
        return caller, float(claims["exp"])

    def caller_of(self, request: Request, needs_any_scope: tuple[str, ...] = (), kind: str = MASKINPORTEN) -> Caller:
        """The caller of `request`, or Unauthorised (401 no/bad token or a token of the other `kind`, 403
        missing scope)."""
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorised(401, f"a bearer access token ({kind}) is required")
        caller = self.verify(token.strip())
        if caller.kind != kind:
            if kind == ALTINN:
                raise Unauthorised(401, "this API takes an Altinn token: exchange the Maskinporten token at the "
                                        "Altinn platform's /authentication/api/v1/exchange/maskinporten first")
            raise Unauthorised(401, "this API takes a Maskinporten token, not an Altinn token")
        if needs_any_scope and not caller.scopes & set(needs_any_scope):
            raise Unauthorised(403, f"the access token lacks the scope {' or '.join(needs_any_scope)}")
        return caller


def problem(status: int, title: str, detail: str) -> JSONResponse:
    """An RFC 7807 problem answer, the error shape of the Altinn APIs."""
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


async def unauthorised_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unauthorised)
    title = "Unauthorized" if exc.status == 401 else "Forbidden"
    return problem(exc.status, title, exc.detail)
