"""A Maskinporten-like token endpoint: JWT-bearer grants signed with an enterprise certificate.

`POST /token` (mounted under /token, so `/token/token`), form fields `grant_type` and `assertion`.
The assertion is an RS256 JWT with the certificate chain in `x5c` (leaf first); the organisation is
the leaf subject's serialNumber. Errors follow RFC 6749: 400 with `error` and `error_description`.

An assertion may ask for an Altinn system-user token, as Maskinporten allows: `authorization_details`
holding one entry of type `urn:altinn:systemuser` with the system user's organisation
(`systemuser_org.ID`, `0192:<orgnr>`). On the sandbox every organisation has one system user, its
own integration point's, which only that organisation's certificate may ask for (RFC 9396's
`invalid_authorization_details` otherwise); the token then carries the same claim.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from datetime import datetime
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.clock import Clock
from gateway.sandbox.auth import SYSTEM_USER_TYPE, AccessTokens

log = logging.getLogger(__name__)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 120
CLOCK_SKEW_S = 10
# Scopes the sandbox grants: the eFormidling, Altinn and KS families real clients ask for.
GRANTABLE_SCOPE = re.compile(r"^(eformidling|altinn|ks):[A-Za-z0-9_.:/-]{1,80}$")


class GrantRefused(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


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


class GrantVerifier:
    """Checks a JWT-bearer assertion: chain to a trusted CA, signature, aud, lifetime, jti, scope."""

    def __init__(self, trusted_ca_pems: list[str], audiences: set[str], clock: Clock) -> None:
        self.trusted = [
            cert for pem in trusted_ca_pems for cert in x509.load_pem_x509_certificates(pem.encode("ascii"))
        ]
        self.audiences = audiences
        self.clock = clock
        self.replays = ReplayGuard()

    def _verify_chain(self, x5c: list[str], now: datetime) -> x509.Certificate:
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(entry)) for entry in x5c]
        except (ValueError, TypeError) as exc:
            raise GrantRefused("invalid_grant", "the x5c header does not hold DER certificates") from exc
        leaf, intermediates = chain[0], chain[1:]
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(self.trusted))
            .time(now)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, intermediates)
        except verification.VerificationError as exc:
            raise GrantRefused(
                "invalid_client", f"the certificate in x5c does not chain to a trusted CA: {exc}"
            ) from exc
        return leaf

    def verify(self, assertion: str) -> tuple[str, list[str], str]:
        """(orgnr, scopes, client_id) of a valid assertion, or GrantRefused."""
        orgnr, scopes, client_id, _system_user = self.verify_grant(assertion)
        return orgnr, scopes, client_id

    def verify_grant(self, assertion: str) -> tuple[str, list[str], str, str | None]:
        """(orgnr, scopes, client_id, system user's orgnr or None) of a valid assertion, or GrantRefused."""
        now = self.clock.now()
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise GrantRefused("invalid_grant", f"the assertion is not a JWT: {exc}") from exc
        if header.get("alg") != "RS256":
            raise GrantRefused("invalid_grant", "the assertion must be signed with RS256")
        x5c = header.get("x5c")
        if not isinstance(x5c, list) or not x5c:
            raise GrantRefused("invalid_grant", "the assertion has no x5c header with the certificate chain")
        leaf = self._verify_chain(x5c, now)
        public_key = leaf.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise GrantRefused("invalid_client", "the certificate's key is not an RSA key")
        try:
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=sorted(self.audiences),
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "require": ["aud", "iat", "exp", "jti", "iss", "scope"]},
            )
        except jwt.InvalidAudienceError as exc:
            raise GrantRefused(
                "invalid_grant", f"the assertion's aud must be one of {', '.join(sorted(self.audiences))}"
            ) from exc
        except jwt.PyJWTError as exc:
            raise GrantRefused("invalid_grant", f"the assertion is not valid: {exc}") from exc
        timestamp = now.timestamp()
        issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
        if expires_at - issued_at > MAX_ASSERTION_LIFETIME_S:
            raise GrantRefused(
                "invalid_grant", f"the assertion may live at most {MAX_ASSERTION_LIFETIME_S} s"
            )
        if issued_at > timestamp + CLOCK_SKEW_S:
            raise GrantRefused("invalid_grant", "the assertion's iat is in the future; check the clock")
        if expires_at < timestamp - CLOCK_SKEW_S:
            raise GrantRefused("invalid_grant", "the assertion has expired")
        scopes = str(claims["scope"]).split()
        unknown = [scope for scope in scopes if not GRANTABLE_SCOPE.match(scope)]
        if not scopes or unknown:
            raise GrantRefused("invalid_scope", f"scope not grantable: {' '.join(unknown) or '(none)'}")
        if not self.replays.first_use(str(claims["jti"]), expires_at, timestamp):
            raise GrantRefused("invalid_grant", "the assertion's jti has been used before")
        serial_numbers = leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        if not serial_numbers:
            raise GrantRefused(
                "invalid_client", "the certificate subject has no serialNumber (organisation number)"
            )
        orgnr = str(serial_numbers[0].value).removeprefix("UN:NO-")
        return orgnr, scopes, str(claims["iss"]), _system_user_of(claims.get("authorization_details"), orgnr)


def _system_user_of(details: object, client_orgnr: str) -> str | None:
    """The system user's organisation an assertion's `authorization_details` asks for (None: none asked)."""
    if details is None:
        return None
    if not isinstance(details, list) or len(details) != 1 or not isinstance(details[0], dict):
        raise GrantRefused("invalid_authorization_details", "authorization_details must be a list of one object")
    detail = details[0]
    if detail.get("type") != SYSTEM_USER_TYPE:
        raise GrantRefused("invalid_authorization_details",
                           f"authorization_details type must be {SYSTEM_USER_TYPE}, not {detail.get('type')!r}")
    organisation = detail.get("systemuser_org")
    party = organisation.get("ID") if isinstance(organisation, dict) else None
    if not isinstance(party, str) or not re.fullmatch(r"0192:\d{9}", party):
        raise GrantRefused("invalid_authorization_details",
                           "authorization_details.systemuser_org.ID must be 0192:<orgnr>")
    system_user_org = party.removeprefix("0192:")
    if system_user_org != client_orgnr:
        raise GrantRefused(
            "invalid_authorization_details",
            f"{system_user_org} has no system user for the integration point of {client_orgnr} (on the sandbox, "
            "each organisation's only system user is its own)",
        )
    return system_user_org


def token_app(verifier: GrantVerifier, access_tokens: AccessTokens) -> Starlette:
    async def token(request: Request) -> JSONResponse:
        # Parsed by hand: form-urlencoded needs no multipart library.
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        try:
            if form.get("grant_type") != JWT_BEARER_GRANT:
                raise GrantRefused("unsupported_grant_type", f"grant_type must be {JWT_BEARER_GRANT}")
            assertion = form.get("assertion")
            if not isinstance(assertion, str) or not assertion:
                raise GrantRefused("invalid_request", "the assertion form field is missing")
            orgnr, scopes, client_id, system_user_org = verifier.verify_grant(assertion)
        except GrantRefused as refused:
            log.info("token grant refused: %s", refused.description)
            return JSONResponse({"error": refused.error, "error_description": refused.description}, 400)
        access_token, expires_in = access_tokens.issue(orgnr, scopes, client_id, system_user_org)
        as_system_user = f" as the system user of {system_user_org}" if system_user_org else ""
        log.info("token granted to %s for %s%s", orgnr, " ".join(scopes), as_system_user)
        return JSONResponse(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in,
             "scope": " ".join(scopes)},
            headers={"Cache-Control": "no-store"},
        )

    return Starlette(routes=[Route("/token", token, methods=["POST"])])
