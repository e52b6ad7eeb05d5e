"""The sandbox's token endpoint checks a grant as Maskinporten does and answers with Maskinporten's codes;
the gateway's TokenClient grants as Digdir documents it and turns each refusal into a line that names the fix."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.clock import FakeClock
from gateway.errors import RetryableChannelError
from gateway.maskinporten import GrantKey, GrantRefused, SystemUser, TokenClient, default_system_user_name
from gateway.sandbox import SandboxCatalogue, SandboxServer
from tests.conftest import REFERENCE
from tests.sandbox.support import DPO_RECEIVER, PERSON, SENDER, Credentials, Pki

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT = f"MOVE_IP_{SENDER}"
PRODUCTION_LEAF = REFERENCE / "vectors" / "pki" / "leaf" / "commfides-g3-PROD_ks-971032146_sign_2026-09-27_expired.pem"


def assertion(credentials: Credentials, audience: str, *, issued_at: float | None = None, lifetime: int = 60,
              jti: str | None = None, scope: str = "eformidling:dpo", client_id: str = CLIENT,
              extra: dict | None = None, x5c: object = None) -> str:
    issued_at = issued_at if issued_at is not None else datetime.now(UTC).timestamp()
    leaf = [base64.b64encode(credentials.chain[0].public_bytes(serialization.Encoding.DER)).decode()]
    claims = {"aud": audience, "iss": client_id, "scope": scope, "iat": int(issued_at),
              "exp": int(issued_at) + lifetime, "jti": jti or str(uuid.uuid4()), **(extra or {})}
    return jwt.encode(claims, credentials.key, algorithm="RS256", headers={"x5c": leaf if x5c is None else x5c})


def grant(http: httpx.Client, sandbox: SandboxServer, signed: str) -> httpx.Response:
    return http.post(sandbox.token_url, data={"grant_type": GRANT, "assertion": signed})


def refused_with(response: httpx.Response, code: str) -> str:
    assert response.status_code == 400, response.text
    description = response.json()["error_description"]
    assert description.endswith(f"({code})"), description
    return description


def client(sandbox: SandboxServer, credentials: Credentials, http: httpx.Client, **kwargs: object) -> TokenClient:
    options: dict = {"audience": sandbox.token_audience, "client_id": CLIENT, "scopes": ("eformidling:dpo",)}
    options.update(kwargs)
    return TokenClient(sandbox.token_url, options.pop("audience"), options.pop("client_id"),
                       GrantKey(credentials.key, certificate=credentials.chain[0]), options.pop("scopes"), http,
                       **options)


def test_a_correct_grant_gets_a_token_for_the_certificates_organisation(
    sandbox: SandboxServer, pki: Pki, http: httpx.Client
) -> None:
    tokens = client(sandbox, pki.orgs[SENDER], http)
    signed = tokens.assertion()
    header, claims = jwt.get_unverified_header(signed), jwt.decode(signed, options={"verify_signature": False})
    # As Digdir documents the grant: RS256, only the leaf in x5c, aud the issuer, iss the client id, 120 s at most.
    assert header["alg"] == "RS256" and len(header["x5c"]) == 1 and "kid" not in header
    assert claims["aud"] == sandbox.token_audience and sandbox.token_audience.endswith("/token/")
    assert claims["iss"] == CLIENT
    assert 0 < claims["exp"] - claims["iat"] <= 120
    assert set(claims) == {"aud", "iss", "scope", "iat", "exp", "jti"}
    assert tokens.assertion() != signed  # a new jti every grant
    response = grant(http, sandbox, signed)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and 60 <= body["expires_in"] <= 120 and body["scope"] == "eformidling:dpo"
    token_claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert token_claims["consumer"]["ID"] == f"0192:{SENDER}"


@pytest.mark.parametrize(("breaks", "code", "fix"), [
    ("wrong aud", "MP-110", "network.token_audience"),
    ("lifetime over 120 s", "MP-130", "clock"),
    ("unknown client", "MP-100", "network.client_id"),
    ("scope not on the client", "MP-200", "Samarbeidsportalen"),
    ("missing externalRef", "MP-303", "channels.dpo.system_user_external_ref"),
    ("another organisation's system user", "MP-302", "system_user_org"),
])
def test_each_broken_rule_gets_maskinportens_code_and_the_gateway_names_the_fix(
    sandbox: SandboxServer, pki: Pki, http: httpx.Client, breaks: str, code: str, fix: str
) -> None:
    credentials = pki.orgs[SENDER]
    tokens = {
        "wrong aud": lambda: client(sandbox, credentials, http, audience=sandbox.token_url),
        "lifetime over 120 s": None,
        "unknown client": lambda: client(sandbox, credentials, http, client_id=f"efm-gateway-{SENDER}"),
        "scope not on the client": lambda: client(sandbox, credentials, http, scopes=("admin:all",)),
        "missing externalRef": lambda: client(sandbox, credentials, http, scopes=("altinn:broker.read",),
                                              system_user=SystemUser(SENDER, "")),
        "another organisation's system user": lambda: client(
            sandbox, credentials, http, scopes=("altinn:broker.read",),
            system_user=SystemUser(DPO_RECEIVER, default_system_user_name(SENDER))),
    }[breaks]
    if tokens is None:  # the gateway never writes such a grant: made by hand
        refused_with(grant(http, sandbox, assertion(credentials, sandbox.token_audience, lifetime=600)), code)
        return
    refused_with(grant(http, sandbox, tokens().assertion()), code)
    with pytest.raises(GrantRefused) as refusal:
        tokens().access_token()
    assert refusal.value.code == code
    line = str(refusal.value)
    assert code in line and fix in line and "\n" not in line
    assert isinstance(refusal.value, RetryableChannelError) and refusal.value.retry_after  # messages wait


def test_a_missing_external_ref_is_mp_303_and_the_right_one_passes(
    sandbox: SandboxServer, pki: Pki, http: httpx.Client
) -> None:
    detail = {"type": "urn:altinn:systemuser", "systemuser_org": {"authority": "iso6523-actorid-upis",
                                                                 "ID": f"0192:{SENDER}"}}
    without = assertion(pki.orgs[SENDER], sandbox.token_audience, scope="altinn:broker.read",
                        extra={"authorization_details": [detail]})
    assert "externalRef is missing" in refused_with(grant(http, sandbox, without), "MP-303")
    right = client(sandbox, pki.orgs[SENDER], http, scopes=("altinn:broker.read",),
                   system_user=SystemUser(SENDER, default_system_user_name(SENDER)))
    claims = jwt.decode(right.assertion(), options={"verify_signature": False})
    assert claims["authorization_details"][0]["externalRef"] == f"{SENDER}_integrasjonspunkt_systembruker_{SENDER}"
    assert right.access_token()


def test_a_reused_jti_is_mp_012(sandbox: SandboxServer, pki: Pki, http: httpx.Client) -> None:
    signed = assertion(pki.orgs[SENDER], sandbox.token_audience)
    assert grant(http, sandbox, signed).status_code == 200
    refused_with(grant(http, sandbox, signed), "MP-012")


def test_a_production_certificate_in_test_is_mp_120_and_said_so(
    sandbox: SandboxServer, pki: Pki, http: httpx.Client
) -> None:
    production = x509.load_pem_x509_certificate(PRODUCTION_LEAF.read_bytes())
    x5c = [base64.b64encode(production.public_bytes(serialization.Encoding.DER)).decode()]
    response = grant(http, sandbox, assertion(pki.orgs[SENDER], sandbox.token_audience, x5c=x5c))
    assert "production certificate" in refused_with(response, "MP-120")
    untrusted = grant(http, sandbox, assertion(pki.rogue, sandbox.token_audience))
    assert "does not chain" in refused_with(untrusted, "MP-120")


def test_the_other_rules(sandbox: SandboxServer, pki: Pki, http: httpx.Client) -> None:
    credentials = pki.orgs[SENDER]
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    assert "expired" in refused_with(
        grant(http, sandbox, assertion(credentials, sandbox.token_audience, issued_at=an_hour_ago)), "MP-130")
    in_a_minute = datetime.now(UTC).timestamp() + 60
    assert "after now" in refused_with(
        grant(http, sandbox, assertion(credentials, sandbox.token_audience, issued_at=in_a_minute)), "MP-130")
    assert "resource_owner" in refused_with(grant(http, sandbox, assertion(
        credentials, sandbox.token_audience, extra={"resource_owner": "x"})), "MP-011")
    refused_with(grant(http, sandbox, assertion(credentials, sandbox.token_audience,
                                                x5c=base64.b64encode(b"x").decode())), "MP-123")
    mismatched = Credentials(pki.orgs[PERSON].key, credentials.chain)
    refused_with(grant(http, sandbox, assertion(mismatched, sandbox.token_audience)), "MP-124")
    # Another organisation's certificate under our client id.
    other = pki.orgs[PERSON]
    refused_with(grant(http, sandbox, assertion(other, sandbox.token_audience)), "MP-122")
    both = {"consumer_org": "910075918", "iss_onbehalfof": "x"}
    refused_with(grant(http, sandbox, assertion(credentials, sandbox.token_audience, extra=both)), "MP-011")
    password = http.post(sandbox.token_url, data={"grant_type": "password", "username": "x"})
    assert password.json()["error"] == "unsupported_grant_type"


def test_consumer_org_is_sent_only_when_asked_and_accepted(sandbox: SandboxServer, pki: Pki,
                                                           http: httpx.Client) -> None:
    tokens = client(sandbox, pki.orgs[SENDER], http, scopes=("ks:fiks",), consumer_org=SENDER)
    assert jwt.decode(tokens.assertion(), options={"verify_signature": False})["consumer_org"] == SENDER
    assert tokens.access_token()


def test_one_grant_per_token_lifetime_and_a_new_one_near_its_end(
    tmp_path: Path, catalogue: SandboxCatalogue, pki: Pki, http: httpx.Client
) -> None:
    clock = FakeClock(datetime.now(UTC))
    with SandboxServer(tmp_path, catalogue, clock=clock) as sandbox:
        tokens = client(sandbox, pki.orgs[SENDER], http, clock=clock, leeway_s=30)
        first = tokens.access_token()
        assert [tokens.access_token() for _ in range(5)] == [first] * 5
        clock.advance(80)  # 120 s token, 30 s leeway: still good
        assert tokens.access_token() == first
        clock.advance(15)  # now inside the leeway
        assert tokens.access_token() != first
        assert tokens.grants_made == 2


def test_network_trouble_is_retryable(sandbox: SandboxServer, pki: Pki) -> None:
    with httpx.Client(timeout=2) as http:
        unreachable = client(sandbox, pki.orgs[SENDER], http)
        unreachable.token_url = "http://127.0.0.1:9/token/token"
        with pytest.raises(RetryableChannelError, match="network error"):
            unreachable.access_token()
