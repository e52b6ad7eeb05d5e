"""The token endpoint grants only well-formed, fresh, trusted grants; TokenClient caches tokens."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.clock import FakeClock
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.sandbox import SandboxCatalogue, SandboxServer
from tests.sandbox.support import ALL_SCOPES, PERSON, SENDER, Credentials, Pki, TokenFactory

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def assertion(credentials: Credentials, audience: str, *, issued_at: float | None = None,
              lifetime: int = 60, jti: str | None = None, scope: str = "eformidling:dpo",
              extra: dict | None = None) -> str:
    issued_at = issued_at if issued_at is not None else datetime.now(UTC).timestamp()
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in credentials.chain]
    claims = {"aud": audience, "iss": "test-client", "scope": scope, "iat": int(issued_at),
              "exp": int(issued_at) + lifetime, "jti": jti or str(uuid.uuid4()), **(extra or {})}
    return jwt.encode(claims, credentials.key, algorithm="RS256", headers={"x5c": x5c})


def grant(http: httpx.Client, sandbox: SandboxServer, signed: str) -> httpx.Response:
    return http.post(sandbox.token_url, data={"grant_type": GRANT, "assertion": signed})


def test_a_valid_grant_gets_an_access_token_for_the_certificates_organisation(
    sandbox: SandboxServer, pki: Pki, http: httpx.Client
) -> None:
    response = grant(http, sandbox, assertion(pki.orgs[SENDER], sandbox.token_audience))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 60 <= body["expires_in"] <= 120
    assert body["scope"] == "eformidling:dpo"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["consumer"]["ID"] == f"0192:{SENDER}"


def test_a_certificate_from_an_untrusted_ca_is_refused(sandbox: SandboxServer, pki: Pki, http: httpx.Client) -> None:
    response = grant(http, sandbox, assertion(pki.rogue, sandbox.token_audience))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"
    assert "trusted CA" in response.json()["error_description"]


def test_a_grant_signed_by_another_key_than_the_certificates_is_refused(
    sandbox: SandboxServer, pki: Pki, http: httpx.Client
) -> None:
    mismatched = Credentials(pki.orgs[PERSON].key, pki.orgs[SENDER].chain)
    response = grant(http, sandbox, assertion(mismatched, sandbox.token_audience))
    assert response.status_code == 400
    assert "signature" in response.json()["error_description"].lower()


def test_a_grant_for_another_audience_is_refused(sandbox: SandboxServer, pki: Pki, http: httpx.Client) -> None:
    response = grant(http, sandbox, assertion(pki.orgs[SENDER], "https://maskinporten.no/"))
    assert response.status_code == 400
    assert "aud" in response.json()["error_description"]


def test_an_expired_or_too_long_lived_grant_is_refused(sandbox: SandboxServer, pki: Pki, http: httpx.Client) -> None:
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    expired = grant(http, sandbox, assertion(pki.orgs[SENDER], sandbox.token_audience, issued_at=an_hour_ago))
    assert expired.status_code == 400
    assert "expired" in expired.json()["error_description"]
    too_long = grant(http, sandbox, assertion(pki.orgs[SENDER], sandbox.token_audience, lifetime=600))
    assert too_long.status_code == 400
    assert "at most 120 s" in too_long.json()["error_description"]


def test_a_replayed_grant_is_refused(sandbox: SandboxServer, pki: Pki, http: httpx.Client) -> None:
    signed = assertion(pki.orgs[SENDER], sandbox.token_audience)
    assert grant(http, sandbox, signed).status_code == 200
    replay = grant(http, sandbox, signed)
    assert replay.status_code == 400
    assert "jti" in replay.json()["error_description"]


def test_unknown_scopes_and_other_grant_types_are_refused(
    sandbox: SandboxServer, pki: Pki, http: httpx.Client
) -> None:
    bad_scope = grant(http, sandbox, assertion(pki.orgs[SENDER], sandbox.token_audience, scope="admin:all"))
    assert bad_scope.json()["error"] == "invalid_scope"
    password = http.post(sandbox.token_url, data={"grant_type": "password", "username": "x"})
    assert password.json()["error"] == "unsupported_grant_type"


def test_token_client_makes_one_grant_for_many_calls(token_client: TokenFactory) -> None:
    tokens = token_client(SENDER)
    first = tokens.access_token()
    assert [tokens.access_token() for _ in range(5)] == [first] * 5
    assert tokens.grants_made == 1


def test_token_client_makes_a_new_grant_when_the_token_is_about_to_expire(
    tmp_path, catalogue: SandboxCatalogue, pki: Pki, http: httpx.Client
) -> None:
    clock = FakeClock(datetime.now(UTC))
    with SandboxServer(tmp_path, catalogue, clock=clock) as sandbox:
        from gateway.tokens import TokenClient

        tokens = TokenClient(sandbox.token_url, sandbox.token_audience, "c", pki.orgs[SENDER].key,
                             pki.orgs[SENDER].chain, ALL_SCOPES, http, clock=clock, leeway_s=30)
        first = tokens.access_token()
        clock.advance(80)  # 120 s token, 30 s leeway: still good
        assert tokens.access_token() == first
        clock.advance(15)  # now inside the leeway
        second = tokens.access_token()
        assert second != first
        assert tokens.grants_made == 2


def test_token_client_reports_refusals_as_permanent_and_network_trouble_as_retryable(
    token_client: TokenFactory, pki: Pki
) -> None:
    with pytest.raises(PermanentChannelError, match="trusted CA"):
        token_client(SENDER, credentials=pki.rogue).access_token()
    with httpx.Client(timeout=2) as http:
        unreachable = token_client(SENDER, http=http)
        unreachable.token_url = "http://127.0.0.1:9/token/token"
        with pytest.raises(RetryableChannelError, match="network error"):
            unreachable.access_token()
