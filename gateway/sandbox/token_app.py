"""A Maskinporten-like token endpoint: JWT-bearer grants checked as Maskinporten checks them.

`POST /token` (mounted under /token, so `/token/token`; the issuer, and so the grant's `aud`, is
`<url>/token/`), form fields `grant_type` and `assertion`. A refusal is HTTP 400 with `error` and an
`error_description` ending in Maskinporten's own code (`MP-110` and the rest), so a gateway that gets a
rule wrong fails here as it would fail in Digdir's test environment:

- the client (`iss`) must be registered: on the sandbox every organisation with a certificate has the
  reference's default client `MOVE_IP_<orgnr>` (MP-100);
- `aud` is exactly the issuer (MP-110); `x5c` an array (MP-123) whose leaf chains to the sandbox CA
  (MP-120, worded for a production certificate in test) and names the client's organisation in
  `serialNumber` or `organizationIdentifier` (MP-122); the signature holds (MP-124);
- `exp - iat` at most 120 s, `iat` not in the future and `exp` not past beyond 10 s (MP-130); a `jti` once
  (MP-012); no claim outside Maskinporten's list, and not both `consumer_org` and `iss_onbehalfof` (MP-011);
- the scopes registered on the client: the eFormidling, Altinn and KS families, DPI's and KRR's (MP-200);
- `authorization_details` of type `urn:altinn:systemuser` names the client organisation's own system
  user, with its `externalRef` `<orgnr>_integrasjonspunkt_systembruker_<orgnr>` (MP-301, MP-302, MP-303).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.clock import Clock
from gateway.environments import PRODUCTION, issuing_environment
from gateway.maskinporten import SYSTEM_USER_TYPE, default_client_id, default_system_user_name
from gateway.sandbox.auth import AccessTokens

log = logging.getLogger(__name__)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 120
CLOCK_SKEW_S = 10
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512")
# The claims Maskinporten lists for a JWT-bearer grant; any other is refused.
ALLOWED_CLAIMS = frozenset({"aud", "iss", "scope", "iat", "exp", "jti", "resource", "consumer_org", "iss_onbehalfof",
                            "authorization_details"})
# Scopes registered on every sandbox client: the eFormidling, Altinn and KS families real clients ask for, DPI's
# Corner 2 scope, and the KRR scopes a DPI person lookup needs (legacy unprefixed `global/*` and `krr:global/*`).
GRANTABLE_SCOPE = re.compile(r"^((eformidling|altinn|ks):[A-Za-z0-9_.:/-]{1,80}|digitalpostinnbygger:send"
                             r"|(krr:)?global/[a-z]{1,40}\.read)$")


class GrantRefused(Exception):
    def __init__(self, error: str, code: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.code = code
        self.description = f"{description} ({code})"


@dataclass(frozen=True)
class Grant:
    """What a valid assertion asks for."""

    orgnr: str
    scopes: list[str]
    client_id: str
    system_user_org: str | None = None
    consumer_org: str | None = None


class ReplayGuard:
    """Remembers the `jti` of every accepted assertion until it would have expired anyway."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, jti: str, expires_at: float, now: float) -> bool:
        with self._lock:
            for old_jti, old_expiry in list(self._seen.items()):
                if old_expiry + CLOCK_SKEW_S < now:
                    del self._seen[old_jti]
            if jti in self._seen:
                return False
            self._seen[jti] = expires_at
            return True


def certificate_orgnr(certificate: x509.Certificate) -> str | None:
    """The organisation number an enterprise certificate carries: serialNumber (SEID 1), else
    organizationIdentifier `NTRNO-<orgnr>` (SEID 2 has only that)."""
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = str(attribute.value).removeprefix("UN:NO-")
        if value.isdigit() and len(value) == 9:
            return value
    for attribute in certificate.subject.get_attributes_for_oid(x509.ObjectIdentifier("2.5.4.97")):
        value = str(attribute.value)
        if value.startswith("NTRNO-") and value[6:].isdigit():
            return value[6:]
    return None


class GrantVerifier:
    """Checks a JWT-bearer assertion as Maskinporten does (see the module's docstring)."""

    def __init__(self, trusted_ca_pems: list[str], issuer: str, clock: Clock, clients: dict[str, str]) -> None:
        certificates = [
            cert for pem in trusted_ca_pems for cert in x509.load_pem_x509_certificates(pem.encode("ascii"))
        ]
        self.roots = [cert for cert in certificates if cert.subject == cert.issuer]
        self.intermediates = [cert for cert in certificates if cert.subject != cert.issuer]
        self.issuer = issuer
        self.clock = clock
        self.clients = dict(clients)  # client id -> its organisation
        self.keys: dict[str, tuple[rsa.RSAPublicKey, str]] = {}  # kid -> a key registered on a client, its org
        self.replays = ReplayGuard()

    @classmethod
    def for_organisations(cls, trusted_ca_pems: list[str], issuer: str, clock: Clock,
                          orgnrs: Iterable[str]) -> GrantVerifier:
        """Every organisation gets the reference's default client, MOVE_IP_<orgnr>."""
        return cls(trusted_ca_pems, issuer, clock, {default_client_id(orgnr): orgnr for orgnr in orgnrs})

    def register_client(self, client_id: str, orgnr: str) -> None:
        self.clients[client_id] = orgnr

    def register_key(self, key_id: str, public_key: rsa.RSAPublicKey, orgnr: str) -> None:
        """A key registered on `orgnr`'s client (JWK mode): grants naming its kid need no certificate."""
        self.keys[key_id] = (public_key, orgnr)

    def _leaf(self, x5c: list[Any], now: datetime) -> x509.Certificate:
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(entry)) for entry in x5c]
        except (ValueError, TypeError) as exc:
            raise GrantRefused("invalid_grant", "MP-123", "Failed to extract certificate from jwt") from exc
        leaf = chain[0]
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(self.roots))
            .time(now)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, [*chain[1:], *self.intermediates])
        except verification.VerificationError as exc:
            if issuing_environment(leaf) == PRODUCTION:
                why = "a production certificate is not accepted in the test environment"
            elif leaf.not_valid_after_utc < now:
                why = f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
            else:
                why = f"the certificate does not chain to a CA this environment trusts ({exc})"
            raise GrantRefused(
                "invalid_grant", "MP-120",
                "Invalid assertion. Client authentication failed. The JWT is signed with an invalid certificate: "
                f"{why}",
            ) from exc
        return leaf

    def verify_grant(self, assertion: str) -> Grant:
        """The grant a valid assertion asks for, or GrantRefused with Maskinporten's code."""
        now = self.clock.now()
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise GrantRefused("invalid_request", "MP-011", f"Invalid assertion. Invalid parameter value: {exc}"
                               ) from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise GrantRefused("invalid_request", "MP-011",
                               f"Invalid assertion: alg must be one of {', '.join(ALLOWED_ALGORITHMS)}")
        x5c = header.get("x5c")
        if x5c is None and "kid" not in header:
            raise GrantRefused("invalid_request", "MP-011", "Invalid assertion: the header holds neither x5c nor kid")
        if x5c is not None and (not isinstance(x5c, list) or not x5c):
            raise GrantRefused("invalid_grant", "MP-123",
                               "Failed to extract certificate from jwt: x5c must be an array")
        client_id = str(unverified.get("iss", ""))
        client_org = self.clients.get(client_id)
        if client_org is None:
            raise GrantRefused("invalid_grant", "MP-100",
                               f"Invalid assertion. Client authentication failed. Client not found: {client_id!r}")
        if unverified.get("aud") != self.issuer:
            raise GrantRefused("invalid_grant", "MP-110",
                               "Invalid assertion. Client authentication failed. Invalid JWT claim aud: it must be "
                               f"{self.issuer}")
        if x5c is None:
            public_key, orgnr = self._registered_key(str(header["kid"]), client_org)
        else:
            leaf = self._leaf(x5c, now)
            orgnr = certificate_orgnr(leaf) or ""
            if orgnr != client_org:
                raise GrantRefused("invalid_grant", "MP-122",
                                   f"Invalid assertion: the certificate belongs to {orgnr or 'no organisation'}, not "
                                   f"to the client's organisation {client_org}")
            leaf_key = leaf.public_key()
            if not isinstance(leaf_key, rsa.RSAPublicKey):
                raise GrantRefused("invalid_grant", "MP-120", "Invalid assertion: the certificate's key is not RSA")
            public_key = leaf_key
        try:
            claims = jwt.decode(
                assertion, public_key, algorithms=list(ALLOWED_ALGORITHMS),
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False,
                         "require": ["aud", "iat", "exp", "jti", "iss", "scope"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise GrantRefused("invalid_grant", "MP-124", "Invalid assertion: the signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise GrantRefused("invalid_request", "MP-011", f"Invalid assertion. Invalid parameter value: {exc}"
                               ) from exc
        self._check_times(claims, now.timestamp())
        extra = sorted(set(claims) - ALLOWED_CLAIMS)
        if extra:
            raise GrantRefused("invalid_request", "MP-011", f"Invalid assertion: unknown claim {', '.join(extra)}")
        if claims.get("consumer_org") and claims.get("iss_onbehalfof"):
            raise GrantRefused("invalid_request", "MP-011",
                               "Invalid assertion: consumer_org and iss_onbehalfof cannot both be given")
        consumer_org = claims.get("consumer_org")
        if consumer_org is not None and not re.fullmatch(r"\d{9}", str(consumer_org)):
            raise GrantRefused("invalid_request", "MP-011", "Invalid assertion: consumer_org must be 9 digits")
        if not self.replays.first_use(str(claims["jti"]), float(claims["exp"]), now.timestamp()):
            raise GrantRefused("invalid_grant", "MP-012", "Grant is used before: every grant needs a new jti")
        scopes = str(claims["scope"]).split()
        unknown = [scope for scope in scopes if not GRANTABLE_SCOPE.match(scope)]
        if not scopes or unknown:
            raise GrantRefused("invalid_scope", "MP-200",
                               f"Token request contains invalid scopes for client: {' '.join(unknown) or '(none)'}")
        system_user = _system_user_of(claims.get("authorization_details"), client_org)
        return Grant(orgnr, scopes, client_id, system_user, str(consumer_org) if consumer_org else None)

    def _registered_key(self, key_id: str, client_org: str) -> tuple[rsa.RSAPublicKey, str]:
        registered = self.keys.get(key_id)
        if registered is None or registered[1] != client_org:
            raise GrantRefused("invalid_grant", "MP-100",
                               f"Invalid assertion. Client authentication failed: no key with kid {key_id!r} is "
                               "registered on the client")
        return registered

    @staticmethod
    def _check_times(claims: dict[str, Any], now: float) -> None:
        try:
            issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
        except (TypeError, ValueError) as exc:
            raise GrantRefused("invalid_request", "MP-011", "Invalid assertion: iat and exp must be numbers") from exc
        if expires_at - issued_at > MAX_ASSERTION_LIFETIME_S:
            raise GrantRefused("invalid_grant", "MP-130",
                               f"Invalid assertion: exp may be at most {MAX_ASSERTION_LIFETIME_S} s after iat")
        if issued_at > now + CLOCK_SKEW_S:
            raise GrantRefused("invalid_grant", "MP-130", "Issue time is after now: check the client's clock")
        if expires_at < now - CLOCK_SKEW_S:
            raise GrantRefused("invalid_grant", "MP-130", "JWT is expired")


def _system_user_of(details: object, client_orgnr: str) -> str | None:
    """The system user's organisation that `authorization_details` asks for (None: none asked)."""
    if details is None:
        return None
    if not isinstance(details, list) or len(details) != 1 or not isinstance(details[0], dict):
        raise GrantRefused("invalid_request", "MP-301", "authorization_details must be a list of one object")
    detail = details[0]
    if detail.get("type") != SYSTEM_USER_TYPE:
        raise GrantRefused("invalid_request", "MP-301",
                           f"authorization_details type must be {SYSTEM_USER_TYPE}, not {detail.get('type')!r}")
    organisation = detail.get("systemuser_org")
    party = organisation.get("ID") if isinstance(organisation, dict) else None
    if not isinstance(party, str) or not re.fullmatch(r"0192:\d{9}", party):
        raise GrantRefused("invalid_request", "MP-301", "authorization_details.systemuser_org.ID must be 0192:<orgnr>")
    system_user_org = party.removeprefix("0192:")
    if system_user_org != client_orgnr:
        raise GrantRefused(
            "invalid_grant", "MP-302",
            f"{system_user_org} has no system user for the integration point of {client_orgnr} (on the sandbox, "
            "each organisation's only system user is its own)",
        )
    expected = default_system_user_name(client_orgnr)
    external_ref = detail.get("externalRef")
    if external_ref != expected:
        said = "is missing" if external_ref is None else f"is {external_ref!r}"
        raise GrantRefused("invalid_grant", "MP-303",
                           f"the system user's externalRef {said}; the system user was created with {expected!r}")
    return system_user_org


def token_app(verifier: GrantVerifier, access_tokens: AccessTokens) -> Starlette:
    async def token(request: Request) -> JSONResponse:
        # Parsed by hand: form-urlencoded needs no multipart library.
        try:
            raw = await request.body()
        except ClientDisconnect:  # the client went away (killed mid-request): nobody to answer
            return JSONResponse({"error": "invalid_request", "error_description": "the request was cut off"}, 400)
        form = {key: values[0] for key, values in parse_qs(raw.decode("utf-8", "replace")).items()}
        try:
            if form.get("grant_type") != JWT_BEARER_GRANT:
                raise GrantRefused("unsupported_grant_type", "MP-011", f"grant_type must be {JWT_BEARER_GRANT}")
            assertion = form.get("assertion")
            if not isinstance(assertion, str) or not assertion:
                raise GrantRefused("invalid_request", "MP-011", "the assertion form field is missing")
            grant = verifier.verify_grant(assertion)
        except GrantRefused as refused:
            log.info("token grant refused: %s", refused.description)
            return JSONResponse({"error": refused.error, "error_description": refused.description}, 400)
        access_token, expires_in = access_tokens.issue(grant.orgnr, grant.scopes, grant.client_id,
                                                       grant.system_user_org, grant.consumer_org)
        as_system_user = f" as the system user of {grant.system_user_org}" if grant.system_user_org else ""
        if grant.consumer_org and grant.consumer_org != grant.orgnr:
            as_system_user += f" on behalf of {grant.consumer_org}"
        log.info("token granted to %s for %s%s", grant.orgnr, " ".join(grant.scopes), as_system_user)
        return JSONResponse(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in,
             "scope": " ".join(grant.scopes)},
            headers={"Cache-Control": "no-store"},
        )

    return Starlette(routes=[Route("/token", token, methods=["POST"])])
